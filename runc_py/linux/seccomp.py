"""Load an OCI `linux.seccomp` profile through libseccomp: what runc's libcontainer/seccomp
(seccomp_linux.go over libseccomp-golang) and its specconv seccomp conversion do.

Only the init imports this, and only for a config with seccomp; ctypes and libseccomp load on
first use. The filter is built with NO_NEW_PRIVS left to the caller (SCMP_FLTATR_CTL_NNP off),
so loading it needs CAP_SYS_ADMIN unless the process already set no_new_privs.
"""

from __future__ import annotations

import errno
import os

from runc_py import log

TYPE_CHECKING = False  # typing and collections cost the init ~10 ms; only mypy needs them
if TYPE_CHECKING:
    import ctypes
    from collections.abc import Mapping, Sequence
    from typing import Any


# seccomp.h action values; ERRNO and TRACE carry 16 bits of data.
_ACT_KILL_THREAD = 0x00000000
_ACT_KILL_PROCESS = 0x80000000
_ACT_TRAP = 0x00030000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000
_ACT_LOG = 0x7FFC0000
_ACT_ALLOW = 0x7FFF0000
_ACTIONS = {
    "SCMP_ACT_KILL": _ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": _ACT_KILL_PROCESS,
    "SCMP_ACT_KILL_THREAD": _ACT_KILL_THREAD,
    "SCMP_ACT_TRAP": _ACT_TRAP,
    "SCMP_ACT_ERRNO": _ACT_ERRNO,
    "SCMP_ACT_TRACE": _ACT_TRACE,
    "SCMP_ACT_ALLOW": _ACT_ALLOW,
    "SCMP_ACT_LOG": _ACT_LOG,
}
_NOTIFY = "SCMP_ACT_NOTIFY"

# enum scmp_compare
_OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr
_FLTATR_CTL_NNP = 3
_FLTATR_CTL_TSYNC = 4
_FLTATR_CTL_LOG = 6
_FLTATR_CTL_SSB = 7

# OCI flag -> the libseccomp attribute that makes seccomp_load pass it to seccomp(2).
_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": _FLTATR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _FLTATR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _FLTATR_CTL_SSB,
}
_KNOWN_FLAGS = [*_FLAGS, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]

# The OCI names; libseccomp knows each as the lower-case tail ("SCMP_ARCH_X86_64" -> "x86_64").
_ARCHS = [
    "X86",
    "X86_64",
    "X32",
    "ARM",
    "AARCH64",
    "MIPS",
    "MIPS64",
    "MIPS64N32",
    "MIPSEL",
    "MIPSEL64",
    "MIPSEL64N32",
    "PPC",
    "PPC64",
    "PPC64LE",
    "S390",
    "S390X",
    "PARISC",
    "PARISC64",
    "RISCV64",
]

_MAX_ARGS = 6
_NR_SCMP_ERROR = -1


class _Lib:
    """libseccomp.so.2 with the prototypes this module calls."""

    def __init__(self) -> None:
        import ctypes

        class ArgCmp(ctypes.Structure):
            _fields_ = [
                ("arg", ctypes.c_uint),
                ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64),
            ]

        class Version(ctypes.Structure):
            _fields_ = [
                ("major", ctypes.c_uint),
                ("minor", ctypes.c_uint),
                ("micro", ctypes.c_uint),
            ]

        self.ArgCmp = ArgCmp
        lib = self.so = ctypes.CDLL("libseccomp.so.2")
        u32, ptr, cint = ctypes.c_uint32, ctypes.c_void_p, ctypes.c_int
        for name, res, args in (
            ("seccomp_init", ptr, [u32]),
            ("seccomp_release", None, [ptr]),
            ("seccomp_load", cint, [ptr]),
            ("seccomp_attr_set", cint, [ptr, cint, u32]),
            ("seccomp_arch_resolve_name", u32, [ctypes.c_char_p]),
            ("seccomp_arch_add", cint, [ptr, u32]),
            ("seccomp_syscall_resolve_name", cint, [ctypes.c_char_p]),
            ("seccomp_rule_add_array", cint, [ptr, u32, cint, ctypes.c_uint, ctypes.c_void_p]),
            ("seccomp_version", ctypes.POINTER(Version), []),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args

    def call(self, what: str, rc: int) -> None:
        if rc < 0:  # libseccomp returns -errno
            raise OSError(-rc, f"seccomp: {what}: {os.strerror(-rc)}")

    def args(self, conds: Sequence[tuple[int, int, int, int]]) -> ctypes.Array[Any]:
        arr = (self.ArgCmp * max(len(conds), 1))()
        for i, cond in enumerate(conds):
            arr[i] = self.ArgCmp(*cond)
        return arr


_loaded: list[_Lib] = []


def _lib() -> _Lib:
    if not _loaded:
        _loaded.append(_Lib())
    return _loaded[0]


def preload() -> None:
    """Load libseccomp now: after pivot_root the container's rootfs may not have it."""
    _lib()


def libseccomp_version() -> str | None:
    """ "2.5.4", or None without libseccomp (runc-py features' annotation)."""
    try:
        v = _lib().so.seccomp_version().contents
    except OSError:
        return None
    return f"{v.major}.{v.minor}.{v.micro}"


def supported() -> dict[str, Any]:
    """The `linux.seccomp` object of `runc-py features`, with runc's key and value names."""
    try:
        lib = _lib()
    except OSError:
        return {"enabled": False}
    return {
        "enabled": True,
        "actions": sorted(_ACTIONS),
        "operators": sorted(_OPERATORS),
        "archs": sorted(
            "SCMP_ARCH_" + a for a in _ARCHS if lib.so.seccomp_arch_resolve_name(a.lower().encode())
        ),
        "knownFlags": _KNOWN_FLAGS,
        "supportedFlags": list(_FLAGS),
    }


def _action(name: Any, errno_ret: Any, where: str) -> int:
    if name == _NOTIFY:
        raise ValueError(f"seccomp: {where}: SCMP_ACT_NOTIFY (seccomp notify) is not supported")
    if name not in _ACTIONS:
        raise ValueError(f"seccomp: {where}: unknown action {name!r}")
    act = _ACTIONS[name]
    if act in (_ACT_ERRNO, _ACT_TRACE):
        ret = errno.EPERM if errno_ret is None else errno_ret
        if not isinstance(ret, int) or isinstance(ret, bool) or not 0 <= ret <= 0xFFFF:
            raise ValueError(f"seccomp: {where}: errnoRet must be an integer 0..65535, not {ret!r}")
        act |= ret
    return act


def _u64(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
        raise ValueError(f"seccomp: {what} must be an unsigned 64-bit integer, not {v!r}")
    return v


def _conditions(args: Any, where: str) -> list[tuple[int, int, int, int]]:
    out = []
    for arg in args or ():
        if not isinstance(arg, dict):
            raise ValueError(f"seccomp: {where}: an args entry must be an object, not {arg!r}")
        index, op = arg.get("index"), arg.get("op")
        if not isinstance(index, int) or not 0 <= index < _MAX_ARGS:
            raise ValueError(f"seccomp: {where}: arg index must be 0..5, not {index!r}")
        if op not in _OPERATORS:
            raise ValueError(f"seccomp: {where}: unknown operator {op!r}")
        value = _u64(arg.get("value", 0), f"{where}: value")
        value_two = _u64(arg.get("valueTwo", 0), f"{where}: valueTwo")
        out.append((index, _OPERATORS[op], value, value_two))
    return out


def _plan(
    spec: Mapping[str, Any],
) -> tuple[int, list[str], list[str], list[tuple[list[str], int, list[tuple[int, int, int, int]]]]]:
    """Check the whole profile before touching libseccomp: (default action, archs, flags,
    rules as (names, action, conditions))."""
    if not isinstance(spec, dict):
        raise ValueError("seccomp: the profile must be an object")
    if spec.get("listenerPath"):
        raise ValueError("seccomp: listenerPath (seccomp notify) is not supported")
    default = _action(spec.get("defaultAction"), spec.get("defaultErrnoRet"), "defaultAction")
    archs = list(spec.get("architectures") or ())
    for a in archs:
        if not isinstance(a, str) or a.removeprefix("SCMP_ARCH_") not in _ARCHS:
            raise ValueError(f"seccomp: unknown architecture {a!r}")
    flags = list(spec.get("flags") or ())
    for f in flags:
        if f not in _FLAGS:
            known = f in _KNOWN_FLAGS
            raise ValueError(f"seccomp: flag {f!r} is {'not supported' if known else 'unknown'}")
    rules = []
    for i, call in enumerate(spec.get("syscalls") or ()):
        where = f"syscalls[{i}]"
        if not isinstance(call, dict):
            raise ValueError(f"seccomp: {where} must be an object")
        names = call.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"seccomp: {where}: names must be a list of syscall names")
        act = _action(call.get("action"), call.get("errnoRet"), where)
        rules.append((names, act, _conditions(call.get("args"), where)))
    return default, archs, flags, rules


def load(seccomp: Mapping[str, Any]) -> None:
    """Build the filter for an OCI `linux.seccomp` object and load it into this process.

    ValueError for a malformed profile (nothing is loaded then); OSError if libseccomp or the
    kernel refuses. Like runc: syscalls libseccomp does not know are skipped, a rule with the
    default action is skipped, and args naming one index more than once become one rule per
    condition (OR) instead of one rule with all conditions (AND)."""
    default, archs, flags, rules = _plan(seccomp)
    lib = _lib()
    ctx = lib.so.seccomp_init(default)
    if not ctx:
        raise OSError(errno.EINVAL, "seccomp: seccomp_init failed")
    try:
        lib.call("disable NO_NEW_PRIVS", lib.so.seccomp_attr_set(ctx, _FLTATR_CTL_NNP, 0))
        for a in archs:
            token = lib.so.seccomp_arch_resolve_name(a.removeprefix("SCMP_ARCH_").lower().encode())
            if not token:
                raise ValueError(f"seccomp: architecture {a!r} is not known to libseccomp")
            rc = lib.so.seccomp_arch_add(ctx, token)
            if rc != -errno.EEXIST:  # the native arch is already in
                lib.call(f"add architecture {a}", rc)
        for f in flags:
            lib.call(f"set flag {f}", lib.so.seccomp_attr_set(ctx, _FLAGS[f], 1))
        for names, act, conds in rules:
            if act == default:
                continue
            indexes = [c[0] for c in conds]
            split = len(set(indexes)) != len(indexes)
            groups = [[c] for c in conds] if split else [conds]
            for name in names:
                nr = lib.so.seccomp_syscall_resolve_name(name.encode())
                if nr == _NR_SCMP_ERROR:
                    log.debug(f"unknown seccomp syscall {name!r} ignored")
                    continue
                for group in groups:
                    arr = lib.args(group)
                    rc = lib.so.seccomp_rule_add_array(ctx, act, nr, len(group), arr)
                    lib.call(f"add rule for syscall {name}", rc)
        lib.call("load filter", lib.so.seccomp_load(ctx))
    finally:
        lib.so.seccomp_release(ctx)
