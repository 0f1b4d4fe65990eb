"""runc create: set the container up and leave its init blocked on the exec fifo."""

from __future__ import annotations

from runc_py.cli import Context
from runc_py.commands import container_id, preserved
from runc_py.container.create import create
from runc_py.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "[command options] <container-id>"
FLAGS = [
    Flag("bundle", "str", aliases=("b",), default="."),
    Flag("console-socket", "str"),
    Flag("pid-file", "str"),
    Flag("no-pivot", "bool"),
    Flag("no-new-keyring", "bool"),
    Flag("preserve-fds", "int", default=0),
]


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    create(
        ctx.root,
        container_id(pos),
        opts["bundle"],
        pid_file=opts["pid-file"],
        console_socket=opts["console-socket"],
        no_pivot=opts["no-pivot"],
        new_keyring=not opts["no-new-keyring"],
        preserve_fds=preserved(opts),
    )
    return 0
