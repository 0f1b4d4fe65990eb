"""Linux capabilities for the container init: what runc's libcontainer/capabilities (over
syndtr/gocapability) and the capability half of init_linux.go's finalizeNamespace do.

Names follow the OCI spec ("CAP_CHOWN"); sets are the spec's process.capabilities keys.
"""

from __future__ import annotations

import ctypes
import errno
import os

from runc_py import log
from runc_py.linux import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

# linux/capability.h, in number order: CAP_CHOWN is 0 ... CAP_CHECKPOINT_RESTORE is 40.
_NAMES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]
CAPABILITIES: dict[str, int] = {"CAP_" + n: i for i, n in enumerate(_NAMES)}
CAP_SETPCAP = CAPABILITIES["CAP_SETPCAP"]
_warned: set[str] = set()

# The OCI spec's process.capabilities keys.
SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def known_capabilities() -> list[str]:
    """Every capability name this runtime knows, in number order (for `runc-py features`)."""
    return list(CAPABILITIES)


def last_cap() -> int:
    """The highest capability the running kernel knows (/proc/sys/kernel/cap_last_cap)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(CAPABILITIES) - 1


def to_numbers(names: Iterable[str], last: int | None = None) -> list[int]:
    """Capability numbers for `names`. An unknown name is a ValueError; a name the kernel
    does not have (beyond `last`, default the kernel's last cap) is skipped with a warning."""
    last = last_cap() if last is None else last
    out: list[int] = []
    unavailable: list[str] = []
    for name in names:
        num = CAPABILITIES.get(name)
        if num is None:
            raise ValueError(f'unknown capability "{name}"')
        if num > last:
            unavailable.append(name)
        elif num not in out:
            out.append(num)
    new = set(unavailable) - _warned
    if new:
        _warned.update(new)
        log.warning(f"ignoring capabilities unavailable in this kernel: {sorted(new)}")
    return out


def mask(names: Iterable[str], last: int | None = None) -> int:
    """The bitmask of `names`, as /proc/PID/status prints it in hex."""
    return sum(1 << n for n in to_numbers(names, last))


def _effective() -> int:
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    libc._check(libc._libc.syscall(libc.SYS_capget, ctypes.byref(hdr), data), "capget")
    return int(data[0].effective) | int(data[1].effective) << 32


def _capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    libc._check(libc._libc.syscall(libc.SYS_capset, ctypes.byref(hdr), data), "capset")


def drop_bounding(keep: Iterable[str]) -> None:
    """PR_CAPBSET_DROP every capability up to the kernel's last one that is not in `keep`.
    Like gocapability, nothing is dropped without CAP_SETPCAP in the effective set, and
    EINVAL (a cap this kernel lacks) is ignored."""
    keep_nums = set(to_numbers(keep))
    if not _effective() & (1 << CAP_SETPCAP):
        return
    for num in range(last_cap() + 1):
        if num in keep_nums:
            continue
        try:
            libc.prctl(libc.PR_CAPBSET_DROP, num)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise OSError(e.errno, f"drop bounding capability {num}: {e.strerror}") from e


def keep_caps(on: bool) -> None:
    """PR_SET_KEEPCAPS: keep the permitted set across a setuid away from uid 0."""
    libc.prctl(libc.PR_SET_KEEPCAPS, 1 if on else 0)


def apply(caps: Mapping[str, Sequence[str]]) -> None:
    """Set the process's capabilities to exactly `caps` (OCI process.capabilities; a missing
    set is empty, as in runc), like runc's Caps.ApplyCaps: bounding, then capset for
    effective/permitted/inheritable, then ambient (cleared, then each listed cap raised).
    As in runc 1.1, a failed ambient raise (EPERM: the cap is not in permitted+inheritable)
    does not fail the start; it is logged."""
    sets = {s: to_numbers(caps.get(s) or ()) for s in SETS}
    drop_bounding(caps.get("bounding") or ())
    bits = {s: sum(1 << n for n in nums) for s, nums in sets.items()}
    _capset(bits["effective"], bits["permitted"], bits["inheritable"])
    try:
        libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: a kernel before 4.3, no ambient set
            raise
        return
    for num in sets["ambient"]:
        try:
            libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, num)
        except OSError as e:
            log.debug(f"can't raise ambient capability CAP_{_NAMES[num]}: {e.strerror}")


def finalize(
    caps: Mapping[str, Sequence[str]] | None,
    uid: int,
    gid: int,
    additional_gids: Sequence[int] | None = (),
) -> None:
    """The init's last privileged step, in finalizeNamespace's order: drop the bounding set,
    keep caps, setgroups/setgid/setuid, clear keep caps, apply the full sets. `caps` None
    means no capabilities at all (as runc). `additional_gids` None leaves the supplementary
    groups alone (for a user namespace where setgroups is denied)."""
    caps = caps or {}
    for s in SETS:  # validate every name before anything changes
        to_numbers(caps.get(s) or ())
    drop_bounding(caps.get("bounding") or ())
    keep_caps(True)
    if additional_gids is not None:
        os.setgroups(list(additional_gids))
    os.setgid(gid)
    os.setuid(uid)
    keep_caps(False)
    apply(caps)
