"""Thin ctypes bindings to the libc calls a container needs: mount, pivot_root, unshare, setns,
prctl and friends. Python 3.11's `os` has none of them (3.12 added only unshare and setns).

Each wrapper raises OSError with errno and the path involved, so an error message names the
mount or namespace that failed, like runc's.
"""

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

# sys/mount.h
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# linux/prctl.h
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

SYS_pivot_root = 155  # x86_64
SYS_keyctl = 250
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_SETPERM = 5
SYS_capget = 125
SYS_capset = 126

_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]


def _check(ret: int, what: str, path: str | None = None) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    ret = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data) if data else None)
    _check(ret, f"mount {source} to {target}", target)


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), f"umount {target}", target)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(SYS_pivot_root, _b(new_root), _b(put_old)), "pivot_root", new_root)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def sethostname(name: str) -> None:
    b = name.encode()
    _check(_libc.sethostname(b, len(b)), "sethostname")


def setdomainname(name: str) -> None:
    b = name.encode()
    _check(_libc.setdomainname(b, len(b)), "setdomainname")


def join_session_keyring(name: str) -> None:
    """A session keyring of the container's own, so that it cannot read its caller's keys; as
    runc does, its user may search it too (possessor: all; user: view, read, search, link)."""
    joined = _libc.syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, _b(name))
    _check(joined, "join session keyring")
    _check(_libc.syscall(SYS_keyctl, KEYCTL_SETPERM, joined, 0x3F1B0000), "set keyring perms")


def set_process_title(title: str) -> None:
    """Name the process in `ps`/`pstree`: comm is the first word (15 bytes at most), and argv
    is rewritten as the title's words where it fits, so `pstree -a` shows `runc-py init ID`."""
    try:
        buf = ctypes.create_string_buffer(title.split(" ")[0].encode()[:15])
        prctl(PR_SET_NAME, ctypes.addressof(buf))
    except OSError:
        pass
    _rewrite_argv(title)


def _rewrite_argv(title: str) -> None:
    # /proc/PID/cmdline is read from the argv block the kernel laid out at exec; /proc/self/stat
    # says where it is (fields 48-49). Overwriting it in place is what setproctitle does, and
    # needs no CAP_SYS_RESOURCE (unlike PR_SET_MM). It cannot grow past the block's size.
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        start, end = int(fields[45]), int(fields[46])
    except (OSError, ValueError, IndexError):
        return
    size = end - start
    if size <= 1:
        return
    data = title.replace(" ", "\0").encode()[: size - 1]
    ctypes.memset(start, 0, size)
    ctypes.memmove(start, data, len(data))
