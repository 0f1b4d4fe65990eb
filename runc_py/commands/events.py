"""runc events: container statistics from its cgroups; `--stats` prints one JSON event."""

from __future__ import annotations

import json
import sys
import time

from runc_py import cgroups
from runc_py.cli import Context
from runc_py.commands.create import container_id
from runc_py.container import state
from runc_py.errors import RuntimeErr
from runc_py.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "[command options] <container-id>"
FLAGS = [Flag("stats", "bool"), Flag("interval", "str", default="5s")]


def _seconds(s: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for u in ("ms", "s", "m", "h"):
        if s.endswith(u) and s[: -len(u)].replace(".", "", 1).isdigit():
            return float(s[: -len(u)]) * units[u]
    raise RuntimeErr(f"invalid interval {s!r}")


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    cid = container_id(pos)
    st = state.load(ctx.root, cid)
    interval = _seconds(opts["interval"])
    while True:
        if st.status(ctx.root) == "stopped":
            raise RuntimeErr(f"container with id {cid} is not running")
        try:
            data = cgroups.from_state(st.cgroup).stats()
        except cgroups.CgroupError as e:
            raise RuntimeErr(str(e)) from None
        sys.stdout.write(
            json.dumps({"type": "stats", "id": cid, "data": data}, separators=(",", ":")) + "\n"
        )
        sys.stdout.flush()
        if opts["stats"]:
            return 0
        time.sleep(interval)
