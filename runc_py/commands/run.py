"""runc run: create and start a container, and (unless --detach) wait for it and delete it."""

from __future__ import annotations

from runc_py.cli import Context
from runc_py.commands.create import FLAGS as CREATE_FLAGS
from runc_py.commands.create import container_id, preserved
from runc_py.container import wait
from runc_py.container.create import create
from runc_py.container.destroy import destroy
from runc_py.container.start import start
from runc_py.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "[command options] <container-id>"
FLAGS = [*CREATE_FLAGS, Flag("detach", "bool", aliases=("d",)), Flag("keep", "bool")]


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    cid = container_id(pos)
    st = create(
        ctx.root,
        cid,
        opts["bundle"],
        pid_file=opts["pid-file"],
        console_socket=opts["console-socket"],
        no_pivot=opts["no-pivot"],
        preserve_fds=preserved(opts),
        detach=opts["detach"],
    )
    try:
        if not opts["detach"]:
            wait.forward_signals(st.pid)
        start(ctx.root, st)
    except BaseException:
        destroy(ctx.root, st)
        raise
    if opts["detach"]:
        return 0
    code = wait.wait_exit(st.pid)
    if not opts["keep"]:
        destroy(ctx.root, st)
    return code
