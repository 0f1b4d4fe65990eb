"""Mounts as containerd passes them around (`containerd.types.Mount`), and mounting them.

Like containerd's `mount` package on Linux: fstab-style options become MS_* flags plus a data
string, a read-only bind is a bind followed by a read-only remount, and a temporary mount is
always unmounted and its directory removed. mount(2) is called through ctypes (`stacklab.mounts`,
shared with the shim), not the `mount` binary, because applying every layer of a pull goes
through here.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from containerd_py.errdefs import ContainerdError, InvalidArgument
from stacklab.mounts import (
    MNT_DETACH,
    MS_BIND,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SILENT,
    PROPAGATION,
    parse_options,
    sys_mount,
    sys_umount,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mount:
    """One mount(2) call: `type`, `source` and fstab-style `options` (containerd.types.Mount)."""

    type: str
    source: str
    options: list[str]


_PAGESIZE = os.sysconf("SC_PAGESIZE")


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
        oflags = flags & ~PROPAGATION
        if flags & MS_REMOUNT == 0 or data:
            sys_mount(m.source, target, m.type, oflags, data)
        if flags & PROPAGATION:
            sys_mount("", target, "", flags & (PROPAGATION | MS_REC | MS_SILENT), "")
        # The kernel ignores MS_RDONLY on the bind itself; a remount makes it read-only.
        if oflags & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY:
            sys_mount("", target, "", oflags | MS_REMOUNT, "")


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
            sys_umount(target, 0)
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
        time.sleep(0.05)
    log.warning("%s still busy after 2.5s, detaching it", target)
    sys_umount(target, MNT_DETACH)


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
