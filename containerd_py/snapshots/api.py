"""The snapshotter interface and its value types: containerd's `snapshots/snapshotter.go`
(and `mount.Mount`, the form in which a snapshot is handed out)."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from containerd_py.mount import Mount

__all__ = ["Info", "Kind", "Mount", "Snapshotter", "Usage"]


class Kind(IntEnum):
    """The numbers are those of `containerd.services.snapshots.v1.Kind`."""

    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3


@dataclass
class Info:
    name: str
    parent: str
    kind: Kind
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0  # ns since the epoch
    updated_at: int = 0


@dataclass
class Usage:
    size: int = 0  # bytes allocated (st_blocks * 512), hard links counted once
    inodes: int = 0


class Snapshotter(abc.ABC):
    """A backend snapshotter: plain keys, no namespaces, no garbage collection."""

    @abc.abstractmethod
    def stat(self, key: str) -> Info: ...

    @abc.abstractmethod
    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        """Only labels are mutable: "labels" or "labels.<key>"; no fieldpaths means all labels."""

    @abc.abstractmethod
    def usage(self, key: str) -> Usage: ...

    @abc.abstractmethod
    def mounts(self, key: str) -> list[Mount]: ...

    @abc.abstractmethod
    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]: ...

    @abc.abstractmethod
    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]: ...

    @abc.abstractmethod
    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None: ...

    @abc.abstractmethod
    def remove(self, key: str) -> None: ...

    @abc.abstractmethod
    def walk(self) -> Iterator[Info]: ...

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Reclaim directories the metadata no longer references (after a crash or a remove)."""

    @abc.abstractmethod
    def close(self) -> None: ...
