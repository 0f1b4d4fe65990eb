"""runc_py.linux.caps and runc_py.linux.seccomp on the real kernel: a forked child applies the
setting and execs a real program (or reports over a pipe); the parent checks what it saw."""

import ctypes
import errno
import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from runc_py.linux import caps, seccomp

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (capset, setuid, seccomp load)"),
]

BUSYBOX = "/usr/bin/busybox"


def run_child(setup: Callable[[], None], argv: list[str] | None) -> tuple[int, str, str]:
    """Fork; the child runs setup() then execs argv (or exits 0 if argv is None).
    Returns (exit code, or -signal; stdout; stderr)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            setup()
            if argv is None:
                os._exit(0)
            os.execv(argv[0], argv)
        except BaseException as e:
            os.write(2, f"{type(e).__name__}: {e}".encode())
        os._exit(127)
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r, "rb") as f:
        out = f.read().decode()
    with os.fdopen(err_r, "rb") as f:
        err = f.read().decode()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out, err


def status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def cap_masks(text: str) -> dict[str, int]:
    f = status_fields(text)
    return {k: int(f[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


# --- capabilities -------------------------------------------------------------------------


def test_known_capabilities() -> None:
    known = caps.known_capabilities()
    assert len(known) == 41
    assert known[0] == "CAP_CHOWN" and known[40] == "CAP_CHECKPOINT_RESTORE"
    assert caps.CAPABILITIES["CAP_SYS_ADMIN"] == 21 and caps.CAPABILITIES["CAP_BPF"] == 39
    assert 0 < caps.last_cap() <= 63


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed")
def test_known_capabilities_match_runc_features() -> None:
    features = json.loads(subprocess.run(["runc", "features"], capture_output=True).stdout)
    assert caps.known_capabilities() == features["linux"]["capabilities"]


def test_unknown_and_unavailable_names() -> None:
    with pytest.raises(ValueError, match=r'unknown capability "CAP_FOO"'):
        caps.to_numbers(["CAP_CHOWN", "CAP_FOO"])
    # Known by name but beyond the kernel's last cap: skipped, like runc.
    assert caps.to_numbers(["CAP_CHOWN", "CAP_BPF", "CAP_KILL"], last=38) == [0, 5]


def test_finalize_unknown_cap_raises_before_changing_anything() -> None:
    def setup() -> None:
        try:
            caps.finalize({"bounding": ["CAP_CHOWN", "CAP_FOO"]}, 65534, 65534)
        except ValueError as e:
            os.write(1, str(e).encode())
            assert os.getuid() == 0
            os._exit(0)

    code, out, err = run_child(setup, None)
    assert code == 0, err
    assert out.strip() == 'unknown capability "CAP_FOO"'


def test_finalize_root_small_set() -> None:
    names = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_BPF"]  # BPF is in word 2
    sets = {s: names for s in ("bounding", "effective", "permitted", "inheritable")}
    code, out, err = run_child(
        lambda: caps.finalize(sets, 0, 0, [0]), ["/bin/cat", "/proc/self/status"]
    )
    assert code == 0, err
    want = (1 << 0) | (1 << 5) | (1 << 10) | (1 << 39)
    assert caps.mask(names) == want
    assert cap_masks(out) == {
        "CapInh": want,
        "CapPrm": want,
        "CapEff": want,
        "CapBnd": want,
        "CapAmb": 0,
    }


def test_finalize_no_caps_drops_everything() -> None:
    code, out, err = run_child(lambda: caps.finalize(None, 0, 0), ["/bin/cat", "/proc/self/status"])
    assert code == 0, err
    assert set(cap_masks(out).values()) == {0}


def test_finalize_nonroot_ambient_survives_exec() -> None:
    names = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_BPF"]
    sets = {s: names for s in caps.SETS}
    code, out, err = run_child(
        lambda: caps.finalize(sets, 65534, 65534, [1234]), ["/bin/cat", "/proc/self/status"]
    )
    assert code == 0, err
    want = caps.mask(names)
    assert cap_masks(out) == {k: want for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}
    fields = status_fields(out)
    assert fields["Uid"].split() == ["65534"] * 4
    assert fields["Gid"].split() == ["65534"] * 4
    assert fields["Groups"].split() == ["1234"]


def test_ambient_without_inheritable_is_ignored_like_runc() -> None:
    sets = {
        "bounding": ["CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"],  # not inheritable: the raise fails with EPERM
    }
    code, out, err = run_child(
        lambda: caps.finalize(sets, 65534, 65534), ["/bin/cat", "/proc/self/status"]
    )
    assert code == 0, err
    m = cap_masks(out)
    assert (m["CapAmb"], m["CapEff"], m["CapPrm"]) == (0, 0, 0)  # non-root exec, no ambient
    assert m["CapBnd"] == 1 << 10


# --- seccomp ------------------------------------------------------------------------------

needs_libseccomp = pytest.mark.skipif(
    not seccomp.supported()["enabled"], reason="libseccomp.so.2 not installed"
)


def deny_mkdir(action: str, **extra: Any) -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "no_such_syscall_xyz", "mkdirat"], "action": action, **extra},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},  # = default: skipped
        ],
    }


@needs_libseccomp
@pytest.mark.parametrize(
    ("action", "extra", "code", "message"),
    [
        ("SCMP_ACT_ERRNO", {"errnoRet": errno.EACCES}, 1, "Permission denied"),
        ("SCMP_ACT_ERRNO", {}, 1, "Operation not permitted"),
        ("SCMP_ACT_KILL_PROCESS", {}, -signal.SIGSYS, ""),
        ("SCMP_ACT_TRAP", {}, -signal.SIGSYS, ""),
    ],
)
def test_seccomp_denies_mkdir(action: str, extra: dict[str, Any], code: int, message: str) -> None:
    target = f"/tmp/x-{uuid.uuid4().hex}"
    profile = deny_mkdir(action, **extra)
    got, _, err = run_child(lambda: seccomp.load(profile), [BUSYBOX, "mkdir", target])
    assert got == code, err
    assert message in err
    assert not os.path.exists(target)


@needs_libseccomp
def test_seccomp_mode_after_exec() -> None:
    profile = deny_mkdir("SCMP_ACT_ERRNO")
    profile["flags"] = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    code, out, err = run_child(lambda: seccomp.load(profile), ["/bin/cat", "/proc/self/status"])
    assert code == 0, err
    fields = status_fields(out)
    assert fields["Seccomp"].strip() == "2"
    assert fields["Seccomp_filters"].strip() == "1"
    assert fields["NoNewPrivs"].strip() == "0"  # loaded as root without forcing NNP


@needs_libseccomp
def test_seccomp_default_log() -> None:
    profile = {"defaultAction": "SCMP_ACT_LOG"}
    code, _, err = run_child(lambda: seccomp.load(profile), ["/bin/true"])
    assert code == 0, err


@needs_libseccomp
def test_seccomp_default_errno_ret() -> None:
    """A deny-by-default profile: only what the child needs to report and exit is allowed;
    getppid gets defaultErrnoRet."""
    allowed = "write exit exit_group brk mmap munmap mremap madvise rt_sigreturn rt_sigprocmask"
    profile: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.EBADMSG,
        "syscalls": [{"names": allowed.split(), "action": "SCMP_ACT_ALLOW"}],
    }
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        seccomp.load(profile)
        rc = libc.syscall(110)  # getppid on x86_64 (glibc's getppid() skips errno)
        os.write(1, f"{rc} {ctypes.get_errno()}".encode())

    code, out, err = run_child(setup, None)
    assert code == 0, err
    assert out == f"-1 {errno.EBADMSG}"


@needs_libseccomp
def test_seccomp_arg_filters() -> None:
    """personality(2) arg0: EQ 0xffffffff and EQ 8 name the same index, so (like runc) they are
    two rules, OR'd; MASKED_EQ on a second rule; other values pass."""
    profile: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                ],
            },
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": errno.EINVAL,
                "args": [
                    {"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": 0xF000, "valueTwo": 0x1000}
                ],
            },
        ],
    }

    def setup() -> None:
        seccomp.load(profile)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.personality.argtypes = [ctypes.c_ulong]
        results = []
        for persona in (0xFFFFFFFF, 8, 0x1234, 0):
            ctypes.set_errno(0)
            rc = libc.personality(persona)
            results.append(-ctypes.get_errno() if rc == -1 else 0)
        os.write(1, json.dumps(results).encode())

    code, out, err = run_child(setup, None)
    assert code == 0, err
    assert json.loads(out) == [-errno.EPERM, -errno.EPERM, -errno.EINVAL, 0]


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"defaultAction": "SCMP_ACT_FOO"}, "unknown action 'SCMP_ACT_FOO'"),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_FOO"}],
            },
            r"syscalls\[0\]: unknown action 'SCMP_ACT_FOO'",
        ),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "not supported"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}, "not supported"),
        (
            {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]},
            "unknown architecture",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["read"],
                        "action": "SCMP_ACT_ERRNO",
                        "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}],
                    }
                ],
            },
            "unknown operator",
        ),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_X"]}, "unknown"),
    ],
)
def test_seccomp_malformed_profile(profile: dict[str, Any], message: str) -> None:
    # ValueError comes from checking the profile, before anything is loaded: safe in-process.
    with pytest.raises(ValueError, match=message):
        seccomp.load(profile)


@needs_libseccomp
@pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed")
def test_supported_matches_runc_features() -> None:
    features = json.loads(subprocess.run(["runc", "features"], capture_output=True).stdout)
    theirs = features["linux"]["seccomp"]
    ours = seccomp.supported()
    assert ours["actions"] == [a for a in theirs["actions"] if a != "SCMP_ACT_NOTIFY"]
    assert ours["operators"] == theirs["operators"]
    assert set(theirs["archs"]) <= set(ours["archs"])
    assert seccomp.libseccomp_version() == features["annotations"].get(
        "io.github.seccomp.libseccomp.version", seccomp.libseccomp_version()
    )
