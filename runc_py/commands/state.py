"""runc state: the container's state as JSON (runtime-spec fields plus runc's)."""

from __future__ import annotations

import json
import sys

from runc_py.cli import Context
from runc_py.commands import container_id
from runc_py.container import state

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "<container-id>"
FLAGS: list[Any] = []


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    st = state.load(ctx.root, container_id(pos))
    # json.MarshalIndent + os.Stdout.Write, as runc does: no newline after the closing brace.
    sys.stdout.write(json.dumps(st.runc_state(ctx.root), indent=2))
    return 0
