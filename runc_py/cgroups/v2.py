"""Cgroup v2 manager: stands for runc's libcontainer/cgroups/fs2 (one directory in the unified
hierarchy, controllers enabled through the parents' cgroup.subtree_control)."""

from __future__ import annotations

import os
import time

from runc_py import cgroups as cg
from runc_py.cgroups import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

MAX = 2**64 - 1  # how runc reports "max"
# OCI resources (section, key) -> (controller, file, conversion) for the one-file values
PLAIN: dict[tuple[str, str], tuple[str, str, Callable[[Any], Any]]] = {
    ("cpu", "cpus"): ("cpuset", "cpuset.cpus", str),
    ("cpu", "mems"): ("cpuset", "cpuset.mems", str),
    ("memory", "reservation"): ("memory", "memory.low", int),
    ("cpu", "shares"): ("cpu", "cpu.weight", lambda s: 1 + (s - 2) * 9999 // 262142),  # runc's
    ("cpu", "idle"): ("cpu", "cpu.idle", int),
    ("pids", "limit"): ("pids", "pids.max", lambda n: n if n > 0 else "max"),
}
MEMORY = {("memory", k) for k in ("limit", "swap")}
SUPPORTED: set[tuple[str, str | None]] = (
    set(PLAIN) | MEMORY | {("cpu", "quota"), ("cpu", "period"), ("blockIO", "weight")}
)
SUPPORTED |= {("hugepageLimits", None), ("unified", None), ("devices", None)}
# ignored, like runc: kernel memory is deprecated by the runtime-spec, useHierarchy is always on
SUPPORTED |= {("memory", "kernel"), ("memory", "kernelTCP"), ("memory", "useHierarchy")}


class V2Manager:
    def __init__(self, mount: str, path: str, created: list[str]) -> None:
        self.mount, self.path, self.created = mount, path, created
        self.dir = mount + path

    @classmethod
    def new(cls, absolute: bool, path: str) -> V2Manager:
        mount = cg.v2_mount()
        if not absolute:
            path = cg.own_cgroups().get("", "/").rstrip("/") + path
        return cls(mount, path, [])

    def _chain(self) -> list[str]:
        """The directories from the mount down to our parent."""
        parts = self.path.strip("/").split("/")[:-1]
        return [self.mount] + [
            self.mount + "/" + "/".join(parts[: i + 1]) for i in range(len(parts))
        ]

    def _need(self, ctrl: str, what: str) -> str:
        """Our directory, once `ctrl` is enabled for it (enabling it down the chain if needed)."""
        if ctrl in cg.read(self.dir, "cgroup.controllers").split():
            return self.dir
        if ctrl not in cg.read(self.mount, "cgroup.controllers").split():
            raise CgroupError(
                f"cannot {what}: the {ctrl} controller is not available in cgroup v2 at "
                f"{self.mount} (on a hybrid host it belongs to its cgroup v1 hierarchy)"
            )
        for d in self._chain():
            try:
                cg.write(d, "cgroup.subtree_control", "+" + ctrl)
            except CgroupError as e:
                raise CgroupError(f"cannot {what}: cannot enable {ctrl}: {e}") from None
        return self.dir

    def apply(self, pid: int) -> None:
        self.created += cg.mkdirs(self.mount, self.dir)
        for d in self._chain():  # like runc, enable every available controller on the way down
            for c in set(cg.read(d, "cgroup.controllers").split()):
                if c not in cg.read(d, "cgroup.subtree_control").split():
                    try:
                        cg.write(d, "cgroup.subtree_control", "+" + c)
                    except CgroupError:
                        pass  # e.g. EBUSY: d has processes of its own; _need() reports it later
        if pid > 0:
            cg.write(self.dir, "cgroup.procs", pid)

    def enter(self) -> None:
        cg.write(self.dir, "cgroup.procs", 0)

    def set(self, resources: dict[str, Any]) -> None:
        g = cg.given(resources, SUPPORTED, "v2")
        if ("devices", None) in g:  # cgroup2 has no devices.allow: an eBPF program decides
            from runc_py.cgroups import devicefilter

            try:
                devicefilter.attach(self.dir, list(g[("devices", None)]))
            except (OSError, ValueError) as e:
                raise CgroupError(f"cannot set device rules: {e}") from None
        for key, (ctrl, f, conv) in PLAIN.items():
            if key in g:
                cg.write(self._need(ctrl, f"set {key[0]}.{key[1]}"), f, conv(g[key]))
        if g.keys() & MEMORY:
            d = self._need("memory", "set memory limit")
            limit, swap = g.get(("memory", "limit")) or 0, g.get(("memory", "swap")) or 0
            if limit == -1 and swap == 0:
                swap = -1  # unlimited memory means unlimited swap too
            if swap not in (0, -1):  # runc's v1 semantics (memory+swap) to v2's (swap alone)
                if limit in (0, -1):
                    raise CgroupError("unable to set swap limit without memory limit")
                if swap < limit:
                    raise CgroupError("memory+swap limit should be >= memory limit")
                swap = swap - limit or "0"  # as much swap as memory: no swap at all
            if swap and not os.path.exists(f"{d}/memory.swap.max"):
                raise CgroupError("the swap limit needs memory.swap.max (swap accounting is off)")
            for f, v in (("memory.swap.max", swap), ("memory.max", limit)):
                if v:
                    cg.write(d, f, "max" if v == -1 else v)
        if g.get(("cpu", "quota")) or g.get(("cpu", "period")):
            d = self._need("cpu", "set cpu quota")
            quota, _, period = cg.read(d, "cpu.max").partition(" ")  # an update may give just one
            quota = g.get(("cpu", "quota")) or quota
            quota = "max" if quota in ("max", -1) else quota
            cg.write(d, "cpu.max", f"{quota} {g.get(('cpu', 'period')) or period}")
        if w := g.get(("blockIO", "weight")):
            d = self._need("io", "set blockIO weight")
            if os.path.exists(f"{d}/io.bfq.weight"):
                cg.write(d, "io.bfq.weight", w)
            else:  # runc's mapping of blkio weight [10, 1000] to io.weight [1, 10000]
                cg.write(d, "io.weight", 1 + (w - 10) * 9999 // 990)
        for h in g.get(("hugepageLimits", None), []):
            d = self._need("hugetlb", "set hugepage limits")
            cg.write(d, f"hugetlb.{h['pageSize']}.max", h["limit"])
        for name, value in g.get(("unified", None), {}).items():
            if "/" in name or name.startswith("."):
                raise CgroupError(f'invalid unified resource "{name}"')
            cg.write(self.dir, name, value)

    def freeze(self) -> None:
        self._freeze(1)

    def thaw(self) -> None:
        self._freeze(0)

    def _freeze(self, want: int) -> None:
        if not os.path.exists(f"{self.dir}/cgroup.freeze"):
            raise CgroupError("cannot freeze: no cgroup.freeze (the kernel is older than 5.2)")
        cg.write(self.dir, "cgroup.freeze", want)
        deadline = time.monotonic() + 10
        while cg.kv(cg.read(self.dir, "cgroup.events")).get("frozen") != want:
            if time.monotonic() > deadline:
                raise CgroupError(f"timed out waiting for cgroup.freeze={want} in {self.dir}")
            time.sleep(0.001)

    def frozen(self) -> bool:
        return cg.opt(self.dir, "cgroup.freeze") == "1"

    def pids(self) -> list[int]:
        return cg.procs(self.dir)

    def stats(self) -> dict[str, Any]:
        d, ns = self.dir, 1000
        if not self.exists():
            raise CgroupError(f"cgroup {d} does not exist")
        c = cg.kv(cg.opt(d, "cpu.stat"))
        usage = {"total": c.get("usage_usec", 0) * ns, "kernel": c.get("system_usec", 0) * ns}
        usage["user"] = c.get("user_usec", 0) * ns
        throttling = {
            "periods": c.get("nr_periods", 0),
            "throttledPeriods": c.get("nr_throttled", 0),
        }
        throttling["throttledTime"] = c.get("throttled_usec", 0) * ns
        s: dict[str, Any] = {"cpu": {"usage": usage, "throttling": throttling}, "hugetlb": {}}
        s.update(memory={}, pids={}, cpuset={}, blkio={})
        if os.path.exists(f"{d}/memory.current"):
            raw = cg.kv(cg.opt(d, "memory.stat"))
            s["memory"] = {"cache": raw.get("file", 0), "raw": raw}
            for key, pre in (("usage", "memory."), ("swap", "memory.swap.")):
                s["memory"][key] = {
                    "usage": cg.num(cg.opt(d, pre + "current")),
                    "max": cg.num(cg.opt(d, pre + "peak")),
                    "limit": cg.num(cg.opt(d, pre + "max"), MAX),
                    "failcnt": cg.kv(cg.opt(d, pre + "events")).get("max", 0),
                }
            mem, swap = s["memory"]["usage"], s["memory"]["swap"]  # swap as v1's memory+swap
            swap["usage"] += mem["usage"]
            swap["limit"] = (
                MAX if MAX in (swap["limit"], mem["limit"]) else swap["limit"] + mem["limit"]
            )
        if os.path.exists(f"{d}/pids.current"):
            s["pids"] = {
                "current": cg.num(cg.opt(d, "pids.current")),
                "limit": cg.num(cg.opt(d, "pids.max")),
            }
        if os.path.exists(f"{d}/cpuset.cpus.effective"):
            s["cpuset"] = {k: cg.ids(cg.opt(d, f"cpuset.{k}.effective")) for k in ("cpus", "mems")}
        by_bytes, by_ios = [], []
        for dev, *fields in cg.rows(cg.opt(d, "io.stat")):
            v = {k: int(x) for k, _, x in (f.partition("=") for f in fields)}
            for op, b, n in (("Read", "rbytes", "rios"), ("Write", "wbytes", "wios")):
                by_bytes.append(cg.blkio_entry(dev, op, v.get(b, 0)))
                by_ios.append(cg.blkio_entry(dev, op, v.get(n, 0)))
        s["blkio"] = {"ioServiceBytesRecursive": by_bytes, "ioServicedRecursive": by_ios}
        for f in os.listdir(d):
            if f.startswith("hugetlb.") and f.endswith(".current"):
                size = f.split(".")[1]
                s["hugetlb"][size] = {
                    "usage": cg.num(cg.opt(d, f)),
                    "failcnt": cg.kv(cg.opt(d, f"hugetlb.{size}.events")).get("max", 0),
                }
        return s

    def destroy(self) -> None:
        cg.remove([self.dir], self.created)

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def container_mounts(self) -> list[tuple[str, str]]:
        return [("", self.dir)]

    def to_state(self) -> dict[str, Any]:
        return {"version": 2, "mount": self.mount, "path": self.path, "created": self.created}
