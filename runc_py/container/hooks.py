"""OCI hooks (runtime-spec config.md#posix-platform-hooks; runc's `configs.Hooks.Run`): each
hook runs with the container's state JSON on stdin, its own args and env, and a timeout."""

from __future__ import annotations

import os

from runc_py.errors import RuntimeErr
from stacklab import jsonfast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


def run(kind: str, hooks: list[dict[str, Any]] | None, state: dict[str, Any]) -> None:
    """Run every hook of one kind in order; the first failure stops them and is raised."""
    if not hooks:
        return
    import subprocess

    data = jsonfast.dumps(state).encode()
    for i, hook in enumerate(hooks):
        path = hook.get("path")
        if not path:
            raise RuntimeErr(f"error running {kind} hook #{i}: no path")
        args = hook.get("args") or [path]
        env = dict(e.split("=", 1) for e in hook.get("env") or [] if "=" in e)
        timeout = hook.get("timeout")
        try:
            p = subprocess.Popen(
                args,
                executable=path,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        except OSError as e:
            raise RuntimeErr(f"error running {kind} hook #{i}: {e}") from None
        try:
            out, _ = p.communicate(data, timeout=timeout if timeout else None)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise RuntimeErr(f"error running {kind} hook #{i}: timeout after {timeout}s") from None
        except BrokenPipeError:
            out = p.stdout.read() if p.stdout else b""
            p.wait()
        if p.returncode != 0:
            msg = out.decode(errors="replace").strip()
            raise RuntimeErr(
                f"error running {kind} hook #{i}: exit status {p.returncode}"
                + (f", stdout: {msg}" if msg else "")
            )


def run_warn(kind: str, hooks: list[dict[str, Any]] | None, state: dict[str, Any]) -> None:
    """poststart/poststop: a failure is logged and the lifecycle goes on (runtime-spec)."""
    try:
        run(kind, hooks, state)
    except RuntimeErr as e:
        from runc_py import log

        log.warning(str(e))


def check(hooks: dict[str, Any] | None) -> None:
    if not hooks:
        return
    if not isinstance(hooks, dict):
        raise RuntimeErr("invalid hooks: not an object")
    for kind, lst in hooks.items():
        if kind not in KINDS:
            raise RuntimeErr(f"unknown hook kind {kind!r}")
        for h in lst or []:
            if not isinstance(h, dict) or not os.path.isabs(h.get("path", "")):
                raise RuntimeErr(f"invalid {kind} hook: path must be absolute")
