"""runc update: change a running container's cgroup limits, from flags or a resources JSON
(`-r -` reads stdin, which is how containerd's shim calls it)."""

from __future__ import annotations

import json
import sys

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
FLAGS = [
    Flag("resources", "str", aliases=("r",)),
    Flag("memory", "str"),
    Flag("memory-reservation", "str"),
    Flag("memory-swap", "str"),
    Flag("pids-limit", "int"),
    Flag("cpu-shares", "int"),
    Flag("cpu-quota", "int"),
    Flag("cpu-period", "int"),
    Flag("cpuset-cpus", "str"),
    Flag("cpuset-mems", "str"),
    Flag("blkio-weight", "int"),
]
_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def ram_in_bytes(s: str) -> int:
    """docker/go-units RAMInBytes: 64m, 1g, 512k, or a plain number; -1 means unlimited."""
    t = s.strip().lower()
    if t.endswith("ib"):
        t = t[:-2]
    elif len(t) > 1 and t.endswith("b") and t[-2] in _UNITS:
        t = t[:-1]
    if t == "-1":
        return -1
    mult = 1
    if t and t[-1] in _UNITS:
        mult, t = _UNITS[t[-1]], t[:-1]
    try:
        return int(float(t) * mult)
    except ValueError:
        raise RuntimeErr(f"invalid value {s!r}: not a size") from None


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    cid = container_id(pos)
    st = state.load(ctx.root, cid)
    if st.status(ctx.root) == "stopped":
        raise RuntimeErr(f"container {cid} is not running")
    res: dict[str, Any] = {}
    if opts["resources"]:
        try:
            if opts["resources"] == "-":
                res = json.load(sys.stdin)
            else:
                with open(opts["resources"]) as f:
                    res = json.load(f)
        except (OSError, ValueError) as e:
            raise RuntimeErr(f"unable to read resources: {e}") from None
    mem = {
        "limit": opts["memory"],
        "reservation": opts["memory-reservation"],
        "swap": opts["memory-swap"],
    }
    for k, v in mem.items():
        if v is not None:
            res.setdefault("memory", {})[k] = ram_in_bytes(v)
    cpu = {
        "shares": opts["cpu-shares"],
        "quota": opts["cpu-quota"],
        "period": opts["cpu-period"],
        "cpus": opts["cpuset-cpus"],
        "mems": opts["cpuset-mems"],
    }
    for k, v in cpu.items():
        if v is not None:
            res.setdefault("cpu", {})[k] = v
    if opts["pids-limit"] is not None:
        res["pids"] = {"limit": opts["pids-limit"]}
    if opts["blkio-weight"] is not None:
        res["blockIO"] = {"weight": opts["blkio-weight"]}
    try:
        cgroups.from_state(st.cgroup).set(res)
    except cgroups.CgroupError as e:
        raise RuntimeErr(str(e)) from None
    return 0
