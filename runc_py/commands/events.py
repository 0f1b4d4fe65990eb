"""runc events: container statistics from its cgroups; `--stats` prints one JSON event."""

from __future__ import annotations

import sys
import time

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
FLAGS = [Flag("stats", "bool"), Flag("interval", "str", default="5s")]


def _seconds(s: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for u in ("ms", "s", "m", "h"):
        if s.endswith(u) and s[: -len(u)].replace(".", "", 1).isdigit():
            return float(s[: -len(u)]) * units[u]
    raise RuntimeErr(f"invalid interval {s!r}")


def _omit(d: dict[str, Any], order: tuple[str, ...], keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Go's encoding of one of runc's event structs: its fields in `order`, and those tagged
    `omitempty` (all but `keep`) left out when zero."""
    return {k: d.get(k, 0) for k in order if k in keep or d.get(k) not in (None, 0, [], {}, "")}


_ENTRY = ("limit", "usage", "max", "failcnt")
_CPUSET = (
    "cpus",
    "cpu_exclusive",
    "mems",
    "mem_hardwall",
    "mem_exclusive",
    "memory_migrate",
    "memory_spread_page",
    "memory_spread_slab",
    "memory_pressure",
    "sched_load_balance",
    "sched_relax_domain_level",
)


def runc_stats(s: dict[str, Any]) -> dict[str, Any]:
    """The cgroup stats in the shape of runc's `types.Stats`, so `events` prints what runc does:
    the same sections in the same order, zeros left out where runc's omitempty leaves them out."""
    cpu, mem = s.get("cpu") or {}, s.get("memory") or {}
    usage = ("total", "percpu", "percpu_kernel", "percpu_user", "kernel", "user")
    memory = _omit(mem, ("cache",))
    for k in ("usage", "swap", "kernel", "kernelTCP"):
        memory[k] = _omit(mem.get(k) or {}, _ENTRY, ("limit", "failcnt"))
    if mem.get("raw"):
        memory["raw"] = dict(sorted(mem["raw"].items()))
    blkio = {
        k: [_omit(e, ("major", "minor", "op", "value")) for e in v]
        for k, v in (s.get("blkio") or {}).items()
        if v
    }
    return {
        "cpu": {
            "usage": _omit(cpu.get("usage") or {}, usage, ("kernel", "user")),
            "throttling": _omit(
                cpu.get("throttling") or {}, ("periods", "throttledPeriods", "throttledTime")
            ),
        },
        "cpuset": _omit(s.get("cpuset") or {}, _CPUSET, _CPUSET[1:2] + _CPUSET[3:]),
        "memory": memory,
        "pids": _omit(s.get("pids") or {}, ("current", "limit")),
        "blkio": blkio,
        "hugetlb": {
            size: _omit(h, ("usage", "max", "failcnt"), ("failcnt",))
            for size, h in sorted((s.get("hugetlb") or {}).items())
        },
        "intel_rdt": {},
        "network_interfaces": None,
    }


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    cid = container_id(pos)
    st = state.load(ctx.root, cid)
    interval = _seconds(opts["interval"])
    while True:
        if st.status(ctx.root) == "stopped":
            raise RuntimeErr(f"container with id {cid} is not running")
        try:
            data = runc_stats(cgroups.from_state(st.cgroup).stats())
        except cgroups.CgroupError as e:
            raise RuntimeErr(str(e)) from None
        sys.stdout.write(
            jsonfast.dumps({"type": "stats", "id": cid, "data": data}, (",", ":")) + "\n"
        )
        sys.stdout.flush()
        if opts["stats"]:
            return 0
        time.sleep(interval)
