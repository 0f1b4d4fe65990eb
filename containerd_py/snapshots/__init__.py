"""containerd's snapshotters (overlayfs and native) behind its `snapshots.Snapshotter` API.

These are the backends: they see plain keys. Namespaces, key mapping and garbage collection
belong to the daemon's metadata layer, as in containerd.
"""

from containerd_py.snapshots.api import Info, Kind, Mount, Snapshotter, Usage
from containerd_py.snapshots.native import NativeSnapshotter
from containerd_py.snapshots.overlay import OverlaySnapshotter, overlay_supported

__all__ = [
    "Info",
    "Kind",
    "Mount",
    "NativeSnapshotter",
    "OverlaySnapshotter",
    "Snapshotter",
    "Usage",
    "overlay_supported",
]
