"""Turning a forked runc-py into the container's process (runc's `finalizeNamespace` and
`standard_init_linux.go` / `setns_init_linux.go`): rlimits, the working directory, user and
groups, capabilities, no_new_privs, seccomp, then execve. Shared by the init and by exec."""

from __future__ import annotations

import os
import resource

from runc_py import log
from runc_py.errors import RuntimeErr
from runc_py.linux import caps, libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def preload(proc: dict[str, Any], seccomp: dict[str, Any] | None, hooks_inside: bool) -> None:
    """Import now whatever the process needs after pivot_root or setns(mnt) has left runc-py's
    own files (and libseccomp) behind on the host."""
    if seccomp:
        from runc_py.linux import seccomp as sc

        sc.preload()
    if proc.get("terminal"):
        import socket  # noqa: F401

        from runc_py.container import console  # noqa: F401
    if hooks_inside:
        import subprocess  # noqa: F401
    if log.is_debug():
        import traceback  # noqa: F401


def set_rlimits(rlimits: list[dict[str, Any]]) -> None:
    for r in rlimits:
        name = r.get("type", "")
        res = getattr(resource, name, None)
        if not name.startswith("RLIMIT_") or res is None:
            raise RuntimeErr(f"unknown rlimit type {name!r}")
        try:
            resource.setrlimit(res, (int(r["soft"]), int(r["hard"])))
        except (OSError, ValueError) as e:
            raise RuntimeErr(f"error setting rlimit type {name}: {e}") from None


def set_oom_score_adj(value: int | None) -> None:
    """Root here may lack CAP_SYS_RESOURCE, so lowering the score can fail: keep the current
    value then, as containerd does with `restrict_oom_score_adj`."""
    if value is None:
        return
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))
    except PermissionError:
        log.debug(f"oom_score_adj {value} not allowed, keeping the current value")


def lookup_home(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5]
    except OSError:
        pass
    return "/"


def environ(env: list[str], uid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in env:
        k, sep, v = e.partition("=")
        if not sep or not k:
            raise RuntimeErr(f"invalid environment variable {e!r}")
        out[k] = v
    out.setdefault("HOME", lookup_home(uid))
    return out


def look_path(arg0: str, env: dict[str, str]) -> str:
    """Resolve args[0] with the container's PATH, as Go's exec.LookPath does for runc."""
    if "/" in arg0:
        if os.access(arg0, os.X_OK) and not os.path.isdir(arg0):
            return arg0
        raise RuntimeErr(f'exec: "{arg0}": stat {arg0}: no such file or directory')
    for d in env.get("PATH", "").split(":"):
        cand = os.path.join(d or ".", arg0)
        if os.access(cand, os.X_OK) and not os.path.isdir(cand):
            return cand
    raise RuntimeErr(f'exec: "{arg0}": executable file not found in $PATH')


def enter_cwd(cwd: str) -> None:
    """chdir, then make sure we really are inside the container: a leaked host fd named as
    the cwd (/proc/self/fd/N, runc's CVE-2024-21626) leaves getcwd unable to name the dir."""
    if not cwd.startswith("/"):
        raise RuntimeErr(f"cwd {cwd!r} is not an absolute path")
    try:
        os.chdir(cwd)
        here = os.getcwd()
    except OSError as e:
        raise RuntimeErr(
            f"chdir to cwd ({cwd!r}) set in config.json failed: {e.strerror}"
        ) from None
    if not here.startswith("/"):
        raise RuntimeErr("current working directory is outside of container mount namespace root")


def finalize(
    proc: dict[str, Any], seccomp: dict[str, Any] | None
) -> tuple[str, list[str], dict[str, str]]:
    """Everything between the namespaces and the fifo: returns (path, argv, env) for execve.
    seccomp is loaded later by `exec_process` when no_new_privs is set (so it can stay strict
    about everything the runtime itself still does)."""
    args = list(proc.get("args") or [])
    if not args:
        raise RuntimeErr("args must not be empty")
    user = proc.get("user") or {}
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    env = environ(list(proc.get("env") or []), uid)
    set_rlimits(list(proc.get("rlimits") or []))
    set_oom_score_adj(proc.get("oomScoreAdj"))
    cwd = proc.get("cwd") or "/"
    try:
        enter_cwd(cwd)  # as root first, like runc: the user may not be allowed to yet
        entered = True
    except RuntimeErr:
        entered = False
    if proc.get("noNewPrivileges"):
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    elif seccomp:
        # without no_new_privs the filter must go in while we still have CAP_SYS_ADMIN
        from runc_py.linux import seccomp as sc

        sc.load(seccomp)
    caps.finalize(
        proc.get("capabilities") or {},
        uid,
        gid,
        [int(g) for g in user.get("additionalGids") or []],
    )
    if not entered:
        enter_cwd(cwd)
    path = look_path(args[0], env)  # as the user, from the cwd: `./app` with `WORKDIR /app`
    if "umask" in user:
        os.umask(int(user["umask"]))
    return path, args, env


def exec_process(
    path: str,
    args: list[str],
    env: dict[str, str],
    seccomp: dict[str, Any] | None,
    nnp: bool,
    keep_fds: int,
) -> None:
    """The last step: close every fd not asked for, seccomp (when no_new_privs), execve.
    Only fds 0-2 and the `keep_fds` after them (--preserve-fds, LISTEN_FDS) cross into the
    container's program: nothing of the runtime's, so no host directory either."""
    os.closerange(3 + keep_fds, _max_fd())
    if seccomp and nnp:
        from runc_py.linux import seccomp as sc

        sc.load(seccomp)
    os.execve(path, args, env)


def _max_fd() -> int:
    try:
        return max(int(n) for n in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return 65536
