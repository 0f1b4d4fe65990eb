"""The overlayfs snapshotter (containerd's `snapshots/overlay/overlay.go` and
`overlayutils/check.go`): each snapshot's own changes live in `snapshots/<id>/fs`, and a mount
stacks them (`lowerdir`, nearest parent first) under a writable `upperdir`."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from containerd_py.snapshots.api import Kind, Mount
from containerd_py.snapshots.base import DirSnapshotter
from containerd_py.snapshots.storage import Snapshot
from stacklab.mounts import sys_mount, sys_umount

log = logging.getLogger(__name__)


# Present when the kernel knows the index feature; containerd then always mounts index=off, so
# a lower layer can be shared by mounts whose upper layers differ.
_INDEX_PARAM = "/sys/module/overlay/parameters/index"


class OverlaySnapshotter(DirSnapshotter):
    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._index_off = os.path.exists(_INDEX_PARAM)
        self._userxattr = _needs_userxattr(root)

    def _has_dir(self, kind: Kind, parent: str) -> bool:
        return True

    def _populate(self, path: str, snapshot: Snapshot) -> None:
        upper = os.path.join(path, "fs")
        os.mkdir(upper, 0o755)
        if snapshot.kind == Kind.ACTIVE:
            os.mkdir(os.path.join(path, "work"), 0o711)
        if snapshot.parent_ids:
            # The merged root directory shows the upper's owner: keep the parent's.
            st = os.stat(self._upper(snapshot.parent_ids[0]))
            os.lchown(upper, st.st_uid, st.st_gid)

    def _usage_path(self, snapshot_id: str) -> str:
        return self._upper(snapshot_id)

    def _upper(self, snapshot_id: str) -> str:
        return os.path.join(self._path(snapshot_id), "fs")

    def _mounts(self, snapshot: Snapshot) -> list[Mount]:
        parents = snapshot.parent_ids
        if not parents:
            # overlayfs needs a lower layer: a bind mount of the empty fs instead.
            ro = "ro" if snapshot.kind == Kind.VIEW else "rw"
            return [Mount("bind", self._upper(snapshot.id), [ro, "rbind"])]
        if snapshot.kind == Kind.VIEW and len(parents) == 1:
            return [Mount("bind", self._upper(parents[0]), ["ro", "rbind"])]
        options = []
        if self._index_off:
            options.append("index=off")
        if self._userxattr:
            options.append("userxattr")
        if snapshot.kind == Kind.ACTIVE:
            options.append(f"workdir={os.path.join(self._path(snapshot.id), 'work')}")
            options.append(f"upperdir={self._upper(snapshot.id)}")
        options.append("lowerdir=" + ":".join(self._upper(p) for p in parents))
        return [Mount("overlay", "overlay", options)]


def overlay_supported(root: str) -> bool:
    """Whether overlayfs with several lower layers mounts on `root`'s filesystem (containerd's
    overlayutils.Supported). Needs root, like any mount."""
    os.makedirs(root, 0o700, exist_ok=True)
    return _try_overlay(root, "")


def _needs_userxattr(root: str) -> bool:
    # Only inside a user namespace must overlay keep its xattrs in user.* (kernel >= 5.11);
    # a trial mount answers for this kernel and filesystem (tmpfs refuses it).
    return _in_user_namespace() and _try_overlay(root, ",userxattr")


def _in_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            first = f.readline().split()
    except OSError:
        return False  # no user namespace support at all
    return first != ["0", "0", "4294967295"]


def _try_overlay(root: str, extra_options: str) -> bool:
    check = tempfile.mkdtemp(prefix="overlay-check-", dir=root)
    try:
        dirs = {d: os.path.join(check, d) for d in ("lower1", "lower2", "upper", "work", "merged")}
        for path in dirs.values():
            os.mkdir(path, 0o755)
        data = (
            f"lowerdir={dirs['lower2']}:{dirs['lower1']},upperdir={dirs['upper']},"
            f"workdir={dirs['work']}{extra_options}"
        )
        try:
            sys_mount("overlay", dirs["merged"], "overlay", 0, data)
        except OSError as e:
            log.debug("overlay check mount failed: %s", e.strerror)
            return False
        sys_umount(dirs["merged"])
        return True
    finally:
        shutil.rmtree(check, ignore_errors=True)
