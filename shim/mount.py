"""Mount the container's rootfs from the mounts containerd hands to Create, and take it down
again, like containerd's `mount` package (mount/mount_linux.go: `Mount.Mount`, `UnmountAll`)
that containerd-shim-runc-v2 calls in its Create and Delete.
"""

import errno
import os
from collections.abc import Iterable

from stacklab.mounts import (
    MNT_DETACH,
    MS_BIND,
    MS_RDONLY,
    MS_REMOUNT,
    parse_options,
    sys_mount,
    sys_umount,
)


def mount(fstype: str, source: str, target: str, options: Iterable[str]) -> None:
    """One mount, like containerd's Mount.Mount: a bind mount that asks for `ro` is remounted
    read-only, since the kernel ignores MS_RDONLY on the first bind."""
    flags, data = parse_options(options)
    if fstype == "bind":
        fstype = ""
        flags |= MS_BIND
    _mount(source, target, fstype, flags, data)
    if flags & MS_BIND and flags & MS_RDONLY:
        _mount("", target, "", flags | MS_REMOUNT, "")


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    try:
        sys_mount(source, target, fstype, flags, data)
    except OSError as e:
        raise OSError(
            e.errno, f"mount {source!r} on {target!r} ({fstype or 'bind'}): {e.strerror}"
        ) from None


def mount_all(mounts: Iterable[tuple[str, str, Iterable[str]]], target: str) -> None:
    """Each (type, source, options) on `target`, in order (containerd's mount.All)."""
    for fstype, source, options in mounts:
        mount(fstype, source, target, options)


def is_mountpoint(path: str) -> bool:
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == real for line in f)
    except OSError:
        return False


def unmount_all(target: str) -> None:
    """Unmount `target` until nothing is mounted there (containerd's mount.UnmountAll)."""
    for _ in range(32):
        if not is_mountpoint(target):
            return
        try:
            sys_umount(target)
        except OSError as e:
            if e.errno == errno.EINVAL:  # not a mount point after all
                return
            try:
                sys_umount(target, MNT_DETACH)
            except OSError as e2:
                raise OSError(e2.errno, f"umount {target!r}: {e2.strerror}") from None
