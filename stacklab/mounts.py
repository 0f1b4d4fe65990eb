"""mount(2) the way containerd's `mount` package speaks it, shared by the layers that mount
what containerd hands around (`containerd.types.Mount`): the shim mounts a container's rootfs,
containerd-py mounts snapshots to apply and diff layers.

fstab-style options become MS_* flags plus a file-system data string, and the syscalls go
through ctypes. Standard library only, and cheap to import: the shim loads it on every start.
Each layer keeps its own policy on top (retries, read-only remounts, long lowerdir lists).
"""

import ctypes
import os
from collections.abc import Iterable

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC = 16, 32, 64, 128
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_SILENT = 1024, 2048, 4096, 16384, 32768
MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 1 << 17, 1 << 18, 1 << 19, 1 << 20
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
MNT_DETACH = 2

PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE

# option -> (clears the flag?, flag), as mount/mount_linux.go's parseMountOptions knows them;
# anything else but "defaults" is file-system data. The propagation options are runc's, not in
# containerd 1.6's table; a snapshotter may use them.
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
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
    "private": (False, MS_PRIVATE),
    "rprivate": (False, MS_PRIVATE | MS_REC),
    "shared": (False, MS_SHARED),
    "rshared": (False, MS_SHARED | MS_REC),
    "slave": (False, MS_SLAVE),
    "rslave": (False, MS_SLAVE | MS_REC),
    "unbindable": (False, MS_UNBINDABLE),
    "runbindable": (False, MS_UNBINDABLE | MS_REC),
}

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        _libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return _libc


def parse_options(options: Iterable[str]) -> tuple[int, str]:
    """fstab-style options -> (MS_* flags, data string for the file system)."""
    flags = 0
    data: list[str] = []
    for opt in options:
        clear, flag = FLAGS.get(opt, (False, 0))
        if flag == 0:
            if opt != "defaults":
                data.append(opt)
        elif clear:
            flags &= ~flag
        else:
            flags |= flag
    return flags, ",".join(data)


def sys_mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    """mount(2); OSError(errno, strerror, target) on failure."""
    rc = _c().mount(
        os.fsencode(source) or None, os.fsencode(target), fstype.encode() or None, flags,
        data.encode() or None,
    )  # fmt: skip
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def sys_umount(target: str, flags: int = 0) -> None:
    """umount2(2); OSError(errno, strerror, target) on failure."""
    if _c().umount2(os.fsencode(target), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)
