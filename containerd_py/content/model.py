"""What the content store reports about blobs and ingests (timestamps in ns since the epoch)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Info:
    digest: str
    size: int
    created_at: int  # ns since the epoch: the blob's mtime, set at commit
    updated_at: int  # its atime, which is what containerd reports


@dataclass(frozen=True)
class Status:
    ref: str
    offset: int
    total: int
    expected: str  # only known to an open writer; containerd keeps it nowhere on disk either
    started_at: int
    updated_at: int
