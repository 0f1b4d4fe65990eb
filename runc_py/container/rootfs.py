"""The container's filesystem (like runc's `libcontainer/rootfs_linux.go`): mounts from
config.json, /dev with its default devices and symlinks, pivot_root, and the masked and
read-only paths. All of it runs in the init, inside the container's new mount namespace.
"""

from __future__ import annotations

import errno
import os
import stat

from runc_py.errors import RuntimeErr, describe
from runc_py.linux import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# option -> (clear?, flag), as mount(8) reads them
MOUNT_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (False, libc.MS_RDONLY),
    "rw": (True, libc.MS_RDONLY),
    "nosuid": (False, libc.MS_NOSUID),
    "suid": (True, libc.MS_NOSUID),
    "nodev": (False, libc.MS_NODEV),
    "dev": (True, libc.MS_NODEV),
    "noexec": (False, libc.MS_NOEXEC),
    "exec": (True, libc.MS_NOEXEC),
    "sync": (False, libc.MS_SYNCHRONOUS),
    "async": (True, libc.MS_SYNCHRONOUS),
    "dirsync": (False, libc.MS_DIRSYNC),
    "remount": (False, libc.MS_REMOUNT),
    "mand": (False, libc.MS_MANDLOCK),
    "nomand": (True, libc.MS_MANDLOCK),
    "atime": (True, libc.MS_NOATIME),
    "noatime": (False, libc.MS_NOATIME),
    "diratime": (True, libc.MS_NODIRATIME),
    "nodiratime": (False, libc.MS_NODIRATIME),
    "bind": (False, libc.MS_BIND),
    "rbind": (False, libc.MS_BIND | libc.MS_REC),
    "relatime": (False, libc.MS_RELATIME),
    "norelatime": (True, libc.MS_RELATIME),
    "strictatime": (False, libc.MS_STRICTATIME),
    "nostrictatime": (True, libc.MS_STRICTATIME),
    "lazytime": (False, libc.MS_LAZYTIME),
    "nolazytime": (True, libc.MS_LAZYTIME),
    "nosymfollow": (False, libc.MS_NOSYMFOLLOW),
}
PROPAGATION: dict[str, int] = {
    "private": libc.MS_PRIVATE,
    "rprivate": libc.MS_PRIVATE | libc.MS_REC,
    "shared": libc.MS_SHARED,
    "rshared": libc.MS_SHARED | libc.MS_REC,
    "slave": libc.MS_SLAVE,
    "rslave": libc.MS_SLAVE | libc.MS_REC,
    "unbindable": libc.MS_UNBINDABLE,
    "runbindable": libc.MS_UNBINDABLE | libc.MS_REC,
}
# The devices every container gets (runc's specconv.AllowedDevices that are created).
DEFAULT_DEVICES = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
]
DEV_SYMLINKS = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
]
_ST_TO_MS = [
    (os.ST_RDONLY, libc.MS_RDONLY),
    (os.ST_NOSUID, libc.MS_NOSUID),
    (os.ST_NODEV, libc.MS_NODEV),
    (os.ST_NOEXEC, libc.MS_NOEXEC),
    (os.ST_NOATIME, libc.MS_NOATIME),
    (os.ST_NODIRATIME, libc.MS_NODIRATIME),
    (os.ST_RELATIME, libc.MS_RELATIME),
]


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """(flags, propagation flags, data) from a mount's options."""
    flags = prop = 0
    data: list[str] = []
    for o in options:
        if o in MOUNT_FLAGS:
            clear, f = MOUNT_FLAGS[o]
            flags = flags & ~f if clear else flags | f
        elif o in PROPAGATION:
            prop |= PROPAGATION[o]
        else:
            data.append(o)
    return flags, prop, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """`root`/`unsafe` with every symlink resolved as if `root` were /, so that no path in
    config.json (or a symlink planted in the image) can lead a mount outside the rootfs."""
    todo = [p for p in unsafe.split("/") if p]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        cand = os.path.join(root, *done, part)
        try:
            st = os.lstat(cand)
        except FileNotFoundError:
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise RuntimeErr(f"too many symlinks in {unsafe}")
            target = os.readlink(cand)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p] + todo
        else:
            done.append(part)
    return os.path.join(root, *done)


def _mkdir_or_file(path: str, is_dir: bool) -> None:
    if is_dir:
        os.makedirs(path, 0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        if not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o755))


def _remount_bind(dest: str, flags: int) -> None:
    """Apply ro/nosuid/... to a bind mount: the kernel ignores them on the first mount(2).
    Flags the kernel locked (e.g. nodev from the source mount) are kept, or the remount fails."""
    locked = 0
    try:
        st = os.statvfs(dest)
        for st_flag, ms_flag in _ST_TO_MS:
            if st.f_flag & st_flag:
                locked |= ms_flag
    except OSError:
        pass
    keep = locked & ~libc.MS_RDONLY & (libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
    libc.mount(None, dest, None, libc.MS_BIND | libc.MS_REMOUNT | flags | keep)


def mount_one(rootfs: str, m: dict[str, Any], cgroup_mounts: list[tuple[str, str]]) -> None:
    mtype = m.get("type") or ""
    src = m.get("source") or ""
    dest_rel = m.get("destination") or ""
    if not dest_rel.startswith("/"):
        raise RuntimeErr(f"mount destination {dest_rel!r} is not absolute")
    flags, prop, data = parse_options(list(m.get("options") or []))
    if mtype == "bind" or flags & libc.MS_BIND:
        try:
            src_is_dir = os.path.isdir(src)
            os.stat(src)
        except OSError as e:
            raise RuntimeErr(
                f"error mounting {src!r} to rootfs at {dest_rel!r}: {describe(e)}"
            ) from None
        dest = secure_join(rootfs, dest_rel)
        _mkdir_or_file(dest, src_is_dir)
        bind_flags = libc.MS_BIND | (flags & libc.MS_REC)
        libc.mount(src, dest, None, bind_flags)
        rest = flags & ~(libc.MS_BIND | libc.MS_REC | libc.MS_REMOUNT)
        if rest:
            _remount_bind(dest, rest)
    elif mtype == "cgroup":
        dest = secure_join(rootfs, dest_rel)
        _mount_cgroup(dest, flags, cgroup_mounts)
    else:
        dest = secure_join(rootfs, dest_rel)
        old_mode = _dir_mode(dest) if mtype == "tmpfs" else None
        os.makedirs(dest, 0o755, exist_ok=True)
        if _ro_later(mtype, dest_rel):
            flags &= ~libc.MS_RDONLY  # finalize() makes it read-only, once it is filled
        try:
            libc.mount(src or mtype, dest, mtype, flags, data)
        except OSError as e:
            if mtype == "mqueue" and e.errno in (errno.ENODEV, errno.EPERM):
                # no mqueue in this kernel or userns: bind the host's, like runc does for sysfs
                libc.mount("/dev/mqueue", dest, None, libc.MS_BIND | libc.MS_REC)
            else:
                raise RuntimeErr(
                    f"error mounting {mtype!r} to rootfs at {dest_rel!r}: {describe(e)}"
                ) from e
        if old_mode is not None:
            os.chmod(dest, old_mode)  # like runc: a tmpfs keeps the mode of the dir it covers
    if prop:
        libc.mount(None, dest, None, prop)


def _dir_mode(path: str) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def _ro_later(mtype: str, dest_rel: str) -> bool:
    """runc mounts every tmpfs and /dev read-write first (to chmod them, to create devices and
    mount points in them) and remounts the "ro" ones in finalizeRootfs."""
    return mtype == "tmpfs" or os.path.normpath(dest_rel) == "/dev"


def finalize(mounts: list[dict[str, Any]]) -> None:
    """runc's finalizeRootfs (after pivot_root): the tmpfs mounts and /dev that asked for "ro"."""
    for m in mounts:
        flags, _, _ = parse_options(list(m.get("options") or []))
        dest = m.get("destination") or ""
        is_bind = m.get("type") == "bind" or flags & libc.MS_BIND
        if flags & libc.MS_RDONLY and not is_bind and _ro_later(m.get("type") or "", dest):
            libc.mount(None, dest, None, flags | libc.MS_REMOUNT | libc.MS_BIND)


def _mount_cgroup(dest: str, flags: int, cgroup_mounts: list[tuple[str, str]]) -> None:
    """Without a cgroup namespace, runc shows a container its own cgroups by bind-mounting them
    where the hierarchies would be: a tmpfs at /sys/fs/cgroup holding one bind per hierarchy
    (v1), or the container's own cgroup2 directory (v2)."""
    ro = flags & libc.MS_RDONLY
    base = flags & ~(libc.MS_RDONLY | libc.MS_BIND | libc.MS_REC | libc.MS_REMOUNT)
    old_mode = _dir_mode(dest)
    os.makedirs(dest, 0o755, exist_ok=True)
    if len(cgroup_mounts) == 1 and cgroup_mounts[0][0] == "":
        libc.mount(cgroup_mounts[0][1], dest, None, libc.MS_BIND | libc.MS_REC)
        _remount_bind(dest, base | ro)
        return
    # As runc 1.1: the tmpfs itself stays read-write (it is not one of config.json's mounts,
    # so finalize() leaves it alone) and takes the mode of sysfs' directory it covers (0555).
    libc.mount("tmpfs", dest, "tmpfs", base, "mode=755")
    if old_mode is not None:
        os.chmod(dest, old_mode)
    for name, host_dir in cgroup_mounts:
        sub = os.path.join(dest, name)
        os.makedirs(sub, 0o755, exist_ok=True)
        libc.mount(host_dir, sub, None, libc.MS_BIND | libc.MS_REC)
        _remount_bind(sub, base | ro)


def needs_dev(spec: dict[str, Any]) -> bool:
    """runc populates /dev unless config.json bind-mounts one there (runc's needsSetupDev)."""
    for m in spec.get("mounts") or []:
        if os.path.normpath(m.get("destination") or "") == "/dev":
            options = m.get("options") or []
            return m.get("type") != "bind" and "bind" not in options and "rbind" not in options
    return True


def create_devices(rootfs: str, devices: list[dict[str, Any]], userns: bool) -> None:
    wanted: dict[str, dict[str, Any]] = {
        path: {"path": path, "type": "c", "major": ma, "minor": mi, "fileMode": 0o666}
        for path, ma, mi in DEFAULT_DEVICES
    }
    for d in devices:
        wanted[d["path"]] = d
    old = os.umask(0)
    try:
        for d in wanted.values():
            dest = secure_join(rootfs, d["path"])
            os.makedirs(os.path.dirname(dest), 0o755, exist_ok=True)
            if userns:
                _bind_device(d["path"], dest)
                continue
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
            if d.get("type") not in kind:
                raise RuntimeErr(f"{d['path']} is not a valid device type: {d.get('type')!r}")
            mode = int(d.get("fileMode", 0o666)) & 0o7777
            try:
                os.unlink(dest)
            except FileNotFoundError:
                pass
            dev = os.makedev(d.get("major", 0), d.get("minor", 0))
            try:
                os.mknod(dest, mode | kind[d["type"]], dev)
            except PermissionError:
                _bind_device(d["path"], dest)  # as runc: a host that forbids mknod gets binds
                continue
            os.chown(dest, d.get("uid", 0), d.get("gid", 0))
    finally:
        os.umask(old)


def _bind_device(host_path: str, dest: str) -> None:
    """mknod is not allowed in a user namespace: bind the host's node instead."""
    _mkdir_or_file(dest, False)
    libc.mount(host_path, dest, None, libc.MS_BIND)


def setup_dev_symlinks(rootfs: str) -> None:
    links = list(DEV_SYMLINKS)
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "/dev/core"))
    links.append(("pts/ptmx", "/dev/ptmx"))
    for target, link in links:
        path = os.path.join(rootfs, link.lstrip("/"))
        try:
            os.symlink(target, path)
        except FileExistsError:
            if link == "/dev/ptmx":
                os.unlink(path)
                os.symlink(target, path)


def prepare_root(propagation: str | None) -> None:
    """Stop our mounts from leaking back to the host (rslave by default, like runc)."""
    flags = PROPAGATION.get(propagation or "", libc.MS_SLAVE | libc.MS_REC)
    libc.mount(None, "/", None, flags)


def bind_rootfs(rootfs: str) -> None:
    # pivot_root needs new_root to be a mount point
    libc.mount(rootfs, rootfs, None, libc.MS_BIND | libc.MS_REC)


def pivot_root(rootfs: str) -> None:
    """runc's trick: pivot_root(".", ".") stacks the old root on top of the new one, so it can
    be unmounted without a directory for it in the container's image."""
    old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(new)
        libc.pivot_root(".", ".")
        os.fchdir(old)
        libc.mount(None, ".", None, libc.MS_SLAVE | libc.MS_REC)
        libc.umount(".", libc.MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(old)
        os.close(new)


def move_root(rootfs: str) -> None:
    """--no-pivot: move the rootfs over / and chroot (for ramfs roots, where pivot_root fails)."""
    os.chdir(rootfs)
    libc.mount(rootfs, "/", None, libc.MS_MOVE)
    os.chroot(".")
    os.chdir("/")


def readonly_root() -> None:
    _remount_bind("/", libc.MS_RDONLY)


def mask_path(path: str) -> None:
    if not os.path.lexists(path):
        return  # nothing to hide; a missing /dev/null, though, must fail below
    if os.path.isdir(path):
        libc.mount("tmpfs", path, "tmpfs", libc.MS_RDONLY)
    else:
        libc.mount("/dev/null", path, None, libc.MS_BIND)


def readonly_path(path: str) -> None:
    try:
        libc.mount(path, path, None, libc.MS_BIND | libc.MS_REC)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return
        raise
    _remount_bind(path, libc.MS_RDONLY | libc.MS_REC)


def write_sysctl(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")  # keys checked by create.check_sysctl
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except OSError as e:
            raise RuntimeErr(f"write sysctl {key}: {e.strerror}") from None
