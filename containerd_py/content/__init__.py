"""The content store: blobs addressed by digest, written through resumable ingests."""

from containerd_py.content.local import LocalStore
from containerd_py.content.model import Info, Status
from containerd_py.content.writer import Writer

__all__ = ["Info", "LocalStore", "Status", "Writer"]
