"""runc delete: remove a stopped (or created) container; --force kills a running one first."""

from __future__ import annotations

import os

from runc_py.cli import Context
from runc_py.commands import container_id
from runc_py.container import state
from runc_py.container.destroy import destroy, remove_dir
from runc_py.errors import RuntimeErr
from runc_py.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "[command options] <container-id>"
FLAGS = [Flag("force", "bool", aliases=("f",))]


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    cid = container_id(pos)
    try:
        st = state.load(ctx.root, cid)
    except RuntimeErr:
        if opts["force"]:
            # a create killed before it wrote state.json leaves its directory: like runc,
            # --force removes it, or the id could never be used again
            state.validate_id(cid)
            remove_dir(os.path.join(ctx.root, cid))
            return 0
        raise
    status = st.status(ctx.root)
    if status in ("running", "paused") and not opts["force"]:
        raise RuntimeErr(f"cannot delete container {cid} that is not stopped: {status}")
    destroy(ctx.root, st)
    return 0
