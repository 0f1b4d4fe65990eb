"""Mount the container's rootfs from the mounts containerd hands to Create, and take it down
again, like containerd's `mount` package (mount/mount_linux.go: `Mount.Mount`, `UnmountAll`)
that containerd-shim-runc-v2 calls in its Create and Delete.
"""

import ctypes
import os
from collections.abc import Iterable

# fstab option -> (clear?, flag), as mount/mount_linux.go's parseMountOptions knows them.
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC = 16, 32, 64, 128
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 1024, 2048, 4096, 16384
MS_PRIVATE, MS_SLAVE, MS_SHARED, MS_RELATIME, MS_STRICTATIME = (
    1 << 18,
    1 << 19,
    1 << 20,
    1 << 21,
    1 << 24,
)
MNT_DETACH = 2

FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def parse_options(options: Iterable[str]) -> tuple[int, str]:
    """mount(2) flags and the data string for fstab-style `options`."""
    flags, data = 0, []
    for opt in options:
        known = FLAGS.get(opt)
        if known is None:
            data.append(opt)
        elif known[0]:
            flags &= ~known[1]
        else:
            flags |= known[1]
    return flags, ",".join(data)


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
    rc = _c().mount(
        source.encode() or None, target.encode(), fstype.encode() or None, ctypes.c_ulong(flags),
        data.encode() or None,
    )  # fmt: skip
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(
            err, f"mount {source!r} on {target!r} ({fstype or 'bind'}): {os.strerror(err)}"
        )


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
        if _c().umount2(target.encode(), 0) != 0:
            err = ctypes.get_errno()
            if err == 22:  # EINVAL: not a mount point after all
                return
            if _c().umount2(target.encode(), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"umount {target!r}: {os.strerror(err)}")
