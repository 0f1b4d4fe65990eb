"""The native snapshotter (containerd's `snapshots/native/native.go`): every active snapshot is
a full copy of its parent's tree, handed out as a bind mount. Works on any filesystem, and
needs no mount to prepare or commit."""

from __future__ import annotations

import os

from containerd_py.snapshots.api import Kind, Mount
from containerd_py.snapshots.base import DirSnapshotter
from containerd_py.snapshots.fsutil import copy_dir
from containerd_py.snapshots.storage import Snapshot


class NativeSnapshotter(DirSnapshotter):
    mounts_error = "failed to get snapshot mount"

    def _has_dir(self, kind: Kind, parent: str) -> bool:
        # A view of a parent reads the parent's directory; nothing to copy.
        return kind == Kind.ACTIVE or not parent

    def _populate(self, path: str, snapshot: Snapshot) -> None:
        os.chmod(path, 0o755)
        if snapshot.parent_ids:
            copy_dir(path, self._path(snapshot.parent_ids[0]))

    def _usage_path(self, snapshot_id: str) -> str:
        return self._path(snapshot_id)

    def _mounts(self, snapshot: Snapshot) -> list[Mount]:
        if snapshot.kind == Kind.ACTIVE or not snapshot.parent_ids:
            source = self._path(snapshot.id)
        else:
            source = self._path(snapshot.parent_ids[0])
        return [Mount("bind", source, ["rbind", "ro" if snapshot.kind == Kind.VIEW else "rw"])]
