"""runc kill: send a signal (default SIGTERM) to the init, or with --all to every process."""

from __future__ import annotations

# `signal` is this C module plus enum wrappers; their `enum` would cost every `kill` 3-4 ms
import _signal as signal  # type: ignore[import-not-found]
import os

from runc_py.cli import Context
from runc_py.container import state
from runc_py.container.destroy import kill_all
from runc_py.errors import RuntimeErr, UsageError
from runc_py.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "[command options] <container-id> [signal]"
FLAGS = [Flag("all", "bool", aliases=("a",))]


def parse_signal(s: str) -> int:
    """9, KILL or SIGKILL, like runc."""
    if s.isdigit():
        n = int(s)
        if not 0 < n < signal.NSIG:
            raise RuntimeErr(f"unknown signal {s!r}")
        return n
    name = s.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    sig = getattr(signal, name, None) if name.isalnum() else None  # not SIG_DFL and the like
    if not isinstance(sig, int):
        raise RuntimeErr(f"unknown signal {s!r}")
    return sig


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    if not 1 <= len(pos) <= 2:
        raise UsageError(f"requires 1 or 2 arguments, got {len(pos)}")
    st = state.load(ctx.root, pos[0])
    sig = parse_signal(pos[1] if len(pos) > 1 else "SIGTERM")
    status = st.status(ctx.root)
    if opts["all"]:
        kill_all(st, sig)
        return 0
    if status == "stopped":
        raise RuntimeErr("container not running")
    try:
        os.kill(st.pid, sig)
    except ProcessLookupError:
        raise RuntimeErr("container not running") from None
    return 0
