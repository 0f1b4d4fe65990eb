"""Mounts as containerd passes them around (`containerd.types.Mount`), and mounting them.

Like containerd's `mount` package on Linux: fstab-style options become MS_* flags plus a data
string, a read-only bind is a bind followed by a read-only remount, and a temporary mount is
always unmounted and its directory removed. mount(2) is called through ctypes, not the `mount`
binary, because applying every layer of a pull goes through here.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from containerd_py.errdefs import ContainerdError, InvalidArgument

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mount:
    """One mount(2) call: `type`, `source` and fstab-style `options` (containerd.types.Mount)."""

    type: str
    source: str
    options: list[str]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

_PROPAGATION = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE

# option -> (clears the flag?, flag); anything else but "defaults" is file-system data.
# The propagation options are not in containerd 1.6's table but runc's; a snapshotter may use them.
_FLAGS: dict[str, tuple[bool, int]] = {
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

_PAGESIZE = os.sysconf("SC_PAGESIZE")


def parse_options(options: Sequence[str]) -> tuple[int, str]:
    """fstab-style options -> (MS_* flags, data string for the file system)."""
    flags = 0
    data: list[str] = []
    for opt in options:
        clear, flag = _FLAGS.get(opt, (False, 0))
        if flag == 0:
            if opt != "defaults":
                data.append(opt)
        elif clear:
            flags &= ~flag
        else:
            flags |= flag
    return flags, ",".join(data)


def _sys_mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    ret = _libc.mount(
        os.fsencode(source), os.fsencode(target), fstype.encode(), flags, data.encode() or None
    )
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def _sys_umount(target: str, flags: int) -> None:
    if _libc.umount2(os.fsencode(target), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def _compact_lowerdirs(options: list[str], stack: ExitStack) -> list[str]:
    """Shorten overlay's lowerdir list so the data fits in the one page mount(2) copies.

    containerd chdirs to the lowerdirs' common parent and passes relative paths; the working
    directory is process-wide in a threaded daemon, so name that parent through an open fd
    instead (/proc/self/fd/N/...), which the kernel resolves the same way.
    """
    idx = next((i for i, o in enumerate(options) if o.startswith("lowerdir=")), -1)
    if idx < 0:
        return options
    dirs = options[idx].removeprefix("lowerdir=").split(":")
    if len(dirs) == 1 or not all(d.startswith("/") for d in dirs):
        return options
    common = os.path.commonpath(dirs)
    if common == "/":
        return options
    fd = os.open(common, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    stack.callback(os.close, fd)
    short = [f"/proc/self/fd/{fd}/{os.path.relpath(d, common)}" for d in dirs]
    return [*options[:idx], "lowerdir=" + ":".join(short), *options[idx + 1 :]]


def _mount_one(m: Mount, target: str) -> None:
    with ExitStack() as stack:
        options = m.options
        if m.type == "overlay" and sum(map(len, options)) >= _PAGESIZE - 512:
            options = _compact_lowerdirs(options, stack)
        flags, data = parse_options(options)
        if len(data) >= _PAGESIZE:
            raise InvalidArgument(f"mount options is too long: {len(data)} bytes")
        # A propagation change is its own mount(2) call and must not ride along with the others.
        oflags = flags & ~_PROPAGATION
        if flags & MS_REMOUNT == 0 or data:
            _sys_mount(m.source, target, m.type, oflags, data)
        if flags & _PROPAGATION:
            _sys_mount("", target, "", flags & (_PROPAGATION | MS_REC | MS_SILENT), "")
        # The kernel ignores MS_RDONLY on the bind itself; a remount makes it read-only.
        if oflags & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY:
            _sys_mount("", target, "", oflags | MS_REMOUNT, "")


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Mount each of `mounts` on `target` in order (containerd's mount.All)."""
    for m in mounts:
        try:
            _mount_one(m, target)
        except OSError as e:
            raise ContainerdError(
                f"failed to mount {m.type} {m.source} on {target} "
                f"(options {','.join(m.options)}): {e.strerror}"
            ) from e


def _unmount_one(target: str) -> None:
    # EBUSY is usually a transient reference (a process just leaving the tree); containerd
    # retries for 2.5 s. After that, detach it so the caller can go on.
    for _ in range(50):
        try:
            _sys_umount(target, 0)
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
        time.sleep(0.05)
    log.warning("%s still busy after 2.5s, detaching it", target)
    _sys_umount(target, MNT_DETACH)


def unmount_all(target: str) -> None:
    """Unmount `target` until nothing is mounted there; a missing target is not an error."""
    if not target or not os.path.lexists(target):
        return
    while True:
        try:
            _unmount_one(target)
        except OSError as e:
            if e.errno == errno.EINVAL:  # not a mount point (any more): done
                return
            raise ContainerdError(f"failed to unmount {target}: {e.strerror}") from e


def readonly(mounts: Sequence[Mount]) -> list[Mount]:
    """The same mounts made read-only; an overlay's upperdir becomes its top lowerdir."""
    out: list[Mount] = []
    for m in mounts:
        if m.type == "overlay":
            upper = next((o[9:] for o in m.options if o.startswith("upperdir=")), "")
            opts = [o for o in m.options if not o.startswith(("upperdir=", "workdir="))]
            if upper:
                opts = [
                    f"lowerdir={upper}:{o[9:]}" if o.startswith("lowerdir=") else o for o in opts
                ]
        else:
            opts = [o for o in m.options if o not in ("ro", "rw")] + ["ro"]
        out.append(Mount(m.type, m.source, opts))
    return out


def _temp_location() -> str:
    return os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()


@contextmanager
def temp_mount(mounts: Sequence[Mount], parent_dir: str | None = None) -> Iterator[str]:
    """Mount `mounts` on a fresh directory under `parent_dir` and yield its path.

    On the way out everything is unmounted, then the directory removed with rmdir, never
    recursively: if an unmount failed, a recursive delete would destroy the mounted data.
    """
    root = tempfile.mkdtemp(prefix="containerd-mount", dir=parent_dir or _temp_location())
    try:
        mount_all(mounts, root)
        yield root
    finally:
        try:
            unmount_all(root)
        finally:
            try:
                os.rmdir(root)
            except OSError as e:
                log.error("failed to remove mount temp dir %s: %s", root, e.strerror)
