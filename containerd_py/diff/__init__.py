"""The diff service's engine room: apply a layer into a snapshot, compute a layer from two.

`apply` unpacks a (compressed) layer tar like containerd's archive.Apply and diff/apply,
`walking` writes the tar of the changes between two trees like its walking differ, and
`compression` knows the media types and codecs both use.
"""

from containerd_py.diff.apply import Applied, apply_layer, apply_to_mounts
from containerd_py.diff.walking import diff_mounts, write_diff

__all__ = ["Applied", "apply_layer", "apply_to_mounts", "diff_mounts", "write_diff"]
