"""runc run: create and start a container, and (unless --detach) wait for it and delete it."""

from __future__ import annotations

from runc_py.cli import Context
from runc_py.commands import container_id
from runc_py.commands.create import FLAGS as CREATE_FLAGS
from runc_py.commands.create import create_from
from runc_py.container import wait
from runc_py.container.create import load_spec
from runc_py.container.destroy import destroy
from runc_py.container.start import start
from runc_py.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "[command options] <container-id>"
FLAGS = [*CREATE_FLAGS, Flag("detach", "bool", aliases=("d",)), Flag("keep", "bool")]


def _relays_tty(opts: dict[str, Any]) -> bool:
    """In the foreground with a terminal and no console socket, runc-py is the terminal."""
    if opts["detach"] or opts["console-socket"]:
        return False
    proc = load_spec(opts["bundle"]).get("process")
    return isinstance(proc, dict) and bool(proc.get("terminal"))


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    cid = container_id(pos)
    relay = None
    if _relays_tty(opts):
        from runc_py.container.tty import Relay

        relay = Relay()
    try:
        st = create_from(
            ctx, opts, cid, detach=opts["detach"], console_fd=relay.theirs if relay else None
        )
        try:
            if not opts["detach"]:
                wait.forward_signals(st.pid)
            if relay:
                relay.attach()  # sized and raw before the process starts
            start(ctx.root, st)
        except BaseException:
            destroy(ctx.root, st)
            raise
        if opts["detach"]:
            return 0
        code = relay.run(st.pid) if relay else wait.wait_exit(st.pid)
    finally:
        if relay:
            relay.close()
    if not opts["keep"]:
        destroy(ctx.root, st)
    return code
