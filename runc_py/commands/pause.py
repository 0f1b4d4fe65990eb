"""runc pause: freeze every process of the container through the freezer cgroup."""

from __future__ import annotations

from runc_py import cgroups
from runc_py.cli import Context
from runc_py.commands import container_id
from runc_py.container import state
from runc_py.errors import RuntimeErr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "<container-id>"
FLAGS: list[Any] = []


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    st = state.load(ctx.root, container_id(pos))
    status = st.status(ctx.root)
    if status not in ("running", "created"):
        raise RuntimeErr("container not running")
    try:
        cgroups.from_state(st.cgroup).freeze()
    except cgroups.CgroupError as e:
        raise RuntimeErr(str(e)) from None
    return 0
