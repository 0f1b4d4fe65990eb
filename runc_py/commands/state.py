"""runc state: the container's state as JSON (runtime-spec fields plus runc's)."""

import json
import sys
from typing import Any

from runc_py.cli import Context
from runc_py.commands.create import container_id
from runc_py.container import state

USAGE = "<container-id>"
FLAGS: list[Any] = []


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    st = state.load(ctx.root, container_id(pos))
    sys.stdout.write(json.dumps(st.runc_state(ctx.root), indent=2) + "\n")
    return 0
