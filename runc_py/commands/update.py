"""runc update: change a running container's cgroup limits, from flags or a resources JSON
(`-r -` reads stdin, which is how containerd's shim calls it)."""

from __future__ import annotations

import sys

from runc_py import cgroups
from runc_py.cli import Context
from runc_py.commands import container_id
from runc_py.container import state
from runc_py.errors import RuntimeErr
from runc_py.flags import Flag
from stacklab import jsonfast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "[command options] <container-id>"
FLAGS = [
    Flag("resources", "str", aliases=("r",)),
    Flag("memory", "str"),
    Flag("memory-reservation", "str"),
    Flag("memory-swap", "str"),
    Flag("kernel-memory", "str"),
    Flag("kernel-memory-tcp", "str"),
    Flag("pids-limit", "int"),
    # runc spells it --cpu-share; --cpu-shares (docker's spelling) is accepted too
    Flag("cpu-share", "int", aliases=("cpu-shares",)),
    Flag("cpu-quota", "int"),
    Flag("cpu-period", "int"),
    Flag("cpu-rt-period", "int"),
    Flag("cpu-rt-runtime", "int"),
    Flag("cpuset-cpus", "str"),
    Flag("cpuset-mems", "str"),
    Flag("blkio-weight", "int"),
    Flag("l3-cache-schema", "str"),
    Flag("mem-bw-schema", "str"),
]
# In an update, as in runc, 0 or "" leaves a value unchanged (but for these, where 0 is a value):
# so runc's own template (`runc update --help`, all zeros) changes nothing.
ZERO_IS_A_VALUE = {("memory", "swappiness"), ("cpu", "idle"), ("cpu", "burst")}
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
    if opts["l3-cache-schema"] or opts["mem-bw-schema"]:
        raise RuntimeErr("Intel RDT is not supported by runc-py")
    if opts["resources"]:  # then, as in runc, every other option is ignored
        try:
            if opts["resources"] == "-":
                res = jsonfast.loads(sys.stdin.read())
            else:
                with open(opts["resources"]) as f:
                    res = jsonfast.loads(f.read())
        except (OSError, ValueError) as e:
            raise RuntimeErr(f"unable to read resources: {e}") from None
        if not isinstance(res, dict):
            raise RuntimeErr("unable to read resources: not a JSON object")
    else:
        res = _from_flags(opts)
    for sec, vals in res.items():
        if isinstance(vals, dict) and sec != "unified":
            res[sec] = {
                k: v for k, v in vals.items() if v not in (0, "") or (sec, k) in ZERO_IS_A_VALUE
            }
    try:
        cgroups.from_state(st.cgroup).set(res)
    except cgroups.CgroupError as e:
        raise RuntimeErr(str(e)) from None
    return 0


def _from_flags(opts: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    mem = {
        "limit": opts["memory"],
        "reservation": opts["memory-reservation"],
        "swap": opts["memory-swap"],
        "kernel": opts["kernel-memory"],
        "kernelTCP": opts["kernel-memory-tcp"],
    }
    for k, v in mem.items():
        if v is not None:
            res.setdefault("memory", {})[k] = ram_in_bytes(v)
    cpu = {
        "shares": opts["cpu-share"],
        "quota": opts["cpu-quota"],
        "period": opts["cpu-period"],
        "realtimePeriod": opts["cpu-rt-period"],
        "realtimeRuntime": opts["cpu-rt-runtime"],
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
    return res
