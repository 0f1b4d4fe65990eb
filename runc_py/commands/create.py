"""runc create: set the container up and leave its init blocked on the exec fifo."""

from __future__ import annotations

from runc_py.cli import Context
from runc_py.commands import container_id, preserved
from runc_py.container.create import create
from runc_py.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runc_py.container.state import State

USAGE = "[command options] <container-id>"
FLAGS = [
    Flag("bundle", "str", aliases=("b",), default="."),
    Flag("console-socket", "str"),
    Flag("pid-file", "str"),
    Flag("no-pivot", "bool"),
    Flag("no-new-keyring", "bool"),
    Flag("preserve-fds", "int", default=0),
]


def create_from(ctx: Context, opts: dict[str, Any], cid: str, **more: Any) -> State:
    """`create` with these flags (shared with `run`, which has them all too)."""
    return create(
        ctx.root,
        cid,
        opts["bundle"],
        pid_file=opts["pid-file"],
        console_socket=opts["console-socket"],
        no_pivot=opts["no-pivot"],
        new_keyring=not opts["no-new-keyring"],
        preserve_fds=preserved(opts),
        **more,
    )


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    create_from(ctx, opts, container_id(pos))
    return 0
