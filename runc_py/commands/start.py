"""runc start: release a created container's init to exec the user's process."""

from __future__ import annotations

from runc_py.cli import Context
from runc_py.commands import container_id
from runc_py.container import state
from runc_py.container.start import start

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "<container-id>"
FLAGS: list[Any] = []


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    start(ctx.root, state.load(ctx.root, container_id(pos)))
    return 0
