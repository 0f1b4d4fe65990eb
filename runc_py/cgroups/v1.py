"""Cgroup v1 manager: stands for runc's libcontainer/cgroups/fs (a directory in every mounted
hierarchy, a small writer per controller, the freezer's retry loop)."""

from __future__ import annotations

import errno
import os
import time

from runc_py import cgroups as cg
from runc_py.cgroups import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RATE = "{major}:{minor} {rate}"
# OCI resources (section, key) -> (subsystem, file) where the value is written as it is
PLAIN = {
    ("cpu", "cpus"): ("cpuset", "cpuset.cpus"),
    ("cpu", "mems"): ("cpuset", "cpuset.mems"),
    ("memory", "reservation"): ("memory", "memory.soft_limit_in_bytes"),
    ("memory", "kernelTCP"): ("memory", "memory.kmem.tcp.limit_in_bytes"),
    ("memory", "swappiness"): ("memory", "memory.swappiness"),
    ("cpu", "burst"): ("cpu", "cpu.cfs_burst_us"),
    ("cpu", "realtimePeriod"): ("cpu", "cpu.rt_period_us"),
    ("cpu", "realtimeRuntime"): ("cpu", "cpu.rt_runtime_us"),
    ("cpu", "idle"): ("cpu", "cpu.idle"),
    ("blockIO", "weight"): ("blkio", "blkio.weight"),
    ("blockIO", "leafWeight"): ("blkio", "blkio.leaf_weight"),
    ("network", "classID"): ("net_cls", "net_cls.classid"),
}
# (section, key) -> (subsystem, file, line) for lists written one entry at a time
LISTS = {
    ("blockIO", "weightDevice"): ("blkio", "blkio.weight_device", "{major}:{minor} {weight}"),
    ("blockIO", "throttleReadBpsDevice"): ("blkio", "blkio.throttle.read_bps_device", RATE),
    ("blockIO", "throttleWriteBpsDevice"): ("blkio", "blkio.throttle.write_bps_device", RATE),
    ("blockIO", "throttleReadIOPSDevice"): ("blkio", "blkio.throttle.read_iops_device", RATE),
    ("blockIO", "throttleWriteIOPSDevice"): ("blkio", "blkio.throttle.write_iops_device", RATE),
    ("network", "priorities"): ("net_prio", "net_prio.ifpriomap", "{name} {priority}"),
    ("hugepageLimits", None): ("hugetlb", "hugetlb.{pageSize}.limit_in_bytes", "{limit}"),
}
OWN = {("memory", k) for k in ("limit", "swap", "kernel", "disableOOMKiller", "useHierarchy")}
SUPPORTED = set(PLAIN) | set(LISTS) | OWN | {("cpu", k) for k in ("shares", "quota", "period")}
SUPPORTED |= {("memory", "checkBeforeUpdate"), ("pids", "limit"), ("devices", None)}
MEM = (("usage", ""), ("swap", "memsw."), ("kernel", "kmem."), ("kernelTCP", "kmem.tcp."))
MEMFILES = ("usage_in_bytes", "max_usage_in_bytes", "limit_in_bytes", "failcnt")


class V1Manager:
    def __init__(self, paths: dict[str, str], mounts: dict[str, str], created: list[str]) -> None:
        self.paths = paths  # subsystem ("memory", "name=systemd") -> the container's dir
        self.mounts = mounts  # subsystem -> mount point of its hierarchy
        self.created = created

    @classmethod
    def new(cls, absolute: bool, path: str) -> V1Manager:
        own, paths, mounts = cg.own_cgroups(), {}, {}
        with open("/proc/cgroups") as f:  # the controllers this kernel knows
            known = {ln.split()[0] for ln in f if not ln.startswith("#")}
        for root, mnt, fstype, sopts in cg.mountinfo():
            # runc also joins the cgroup2 mount of a hybrid host, which has no controllers of
            # ours; we leave it, since the first move into a cgroup2 costs the kernel an RCU
            # grace period (5-30 ms here) where v1's `tasks` costs nothing (see enter()).
            if fstype != "cgroup" or not mnt.startswith(cg.ROOT + "/"):
                continue
            for s in sopts:
                if s in known or s.startswith("name="):
                    base = own.get(s, "/")
                    if root != "/" and (base + "/").startswith(root + "/"):  # as the mount sees it
                        base = base[len(root) :]
                    paths[s] = mnt + (path if absolute else base.rstrip("/") + path)
                    mounts[s] = mnt
        if not paths:
            raise CgroupError("no cgroup v1 hierarchy is mounted under /sys/fs/cgroup")
        return cls(paths, mounts, [])

    def _dir(self, sub: str, what: str) -> str:
        if sub not in self.paths:
            raise CgroupError(f"cannot {what}: {sub} cgroup is not mounted")
        return self.paths[sub]

    def apply(self, pid: int) -> None:
        for sub, d in self.paths.items():
            self.created += cg.mkdirs(self.mounts[sub], d)
            if sub == "cpuset":  # an empty cpuset takes no task: inherit the parent's, top down
                parent = self.mounts[sub]
                for part in d[len(parent) :].strip("/").split("/"):
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        if not cg.read(f"{parent}/{part}", f):
                            cg.write(f"{parent}/{part}", f, cg.read(parent, f))
                    parent += "/" + part
            if pid > 0:
                cg.write(d, "cgroup.procs", pid)

    def enter(self) -> None:
        # Writing 0 to `tasks` moves the calling thread - the whole process, single-threaded
        # as our init's stage 1 is - without the kernel's global threadgroup lock, whose first
        # use costs an RCU grace period (5-30 ms here; runc pays it on every create).
        for d in self.paths.values():
            cg.write(d, "tasks", 0)

    def set(self, resources: dict[str, Any]) -> None:
        g = cg.given(resources, SUPPORTED, "v1")
        for rule in g.get(("devices", None), []):
            d = self._dir("devices", "set device rules")
            line = "a"  # the kernel reads nothing after "a": the whole list is reset
            if (rule.get("type") or "a") != "a":
                major, minor = (
                    "*" if rule.get(k) in (None, -1) else rule[k] for k in ("major", "minor")
                )
                line = f"{rule['type']} {major}:{minor} {rule.get('access') or 'rwm'}"
            cg.write(d, "devices.allow" if rule.get("allow") else "devices.deny", line)
        if g.keys() & OWN:
            self._memory(self._dir("memory", "set memory limit"), g)
        if g.get(("cpu", "shares")):
            d, shares = self._dir("cpu", "set cpu shares"), g["cpu", "shares"]
            cg.write(d, "cpu.shares", shares)
            if (got := int(cg.read(d, "cpu.shares"))) != shares:  # the kernel clamped it
                bound = "maximum" if got < shares else "minimum"
                raise CgroupError(f"the {bound} allowed cpu-shares is {got}")
        period, quota, retry = g.get(("cpu", "period")), g.get(("cpu", "quota")), False
        if period:
            try:
                cg.write(self._dir("cpu", "set cpu period"), "cpu.cfs_period_us", period)
            except CgroupError as e:  # old quota / new period may exceed the parent: quota first
                if e.errno != errno.EINVAL or not quota:
                    raise
                retry = True
        if quota:
            cg.write(self._dir("cpu", "set cpu quota"), "cpu.cfs_quota_us", quota)
            if retry:
                cg.write(self.paths["cpu"], "cpu.cfs_period_us", g["cpu", "period"])
        if ("pids", "limit") in g:
            limit = g["pids", "limit"]
            cg.write(self._dir("pids", "set pids limit"), "pids.max", limit if limit > 0 else "max")
        for key, (sub, f) in PLAIN.items():
            if key in g:
                d = self._dir(sub, f"set {key[0]}.{key[1]}")
                if f == "blkio.weight" and not os.path.exists(f"{d}/{f}"):
                    f = "blkio.bfq.weight"  # BFQ's name for it, as runc falls back to
                cg.write(d, f, g[key])
        for (sec, k), (sub, f, line) in LISTS.items():
            for item in g.get((sec, k), []):
                cg.write(self._dir(sub, f"set {sec}"), f.format(**item), line.format(**item))

    def _memory(self, d: str, g: cg.Given) -> None:
        limit, swap = g.get(("memory", "limit")) or None, g.get(("memory", "swap")) or None
        has_swap = os.path.exists(f"{d}/memory.memsw.limit_in_bytes")
        if limit == -1 and swap is None and has_swap:
            swap = -1  # unlimited memory means unlimited swap too
        if swap is not None and not has_swap:
            raise CgroupError(
                "the swap limit needs memory.memsw.limit_in_bytes (swap accounting is off)"
            )
        # memsw (memory+swap) can never be below the memory limit: raise memsw first when it grows
        grow = swap is not None and (
            swap == -1 or cg.num(cg.read(d, "memory.limit_in_bytes")) < swap
        )
        if swap is not None and grow:
            cg.write(d, "memory.memsw.limit_in_bytes", swap)
        if limit is not None:
            try:
                cg.write(d, "memory.limit_in_bytes", limit)
            except CgroupError as e:
                if e.errno != errno.EBUSY:
                    raise
                use, peak = (cg.read(d, f"memory.{f}usage_in_bytes") for f in ("", "max_"))
                msg = f"unable to set memory limit to {limit} (current usage: {use}, peak usage:"
                raise CgroupError(f"{msg} {peak})") from None
        if swap is not None and not grow:
            cg.write(d, "memory.memsw.limit_in_bytes", swap)
        if g.get(("memory", "disableOOMKiller")):
            cg.write(d, "memory.oom_control", 1)
        # memory.kernel is deprecated by the runtime-spec; runc ignores it on current kernels too

    def freeze(self) -> None:
        d = self._dir("freezer", "freeze")
        for i in range(1000):  # FREEZING can stick while tasks fork: retry, thawing now and then
            if i % 50 == 49:
                cg.write(d, "freezer.state", "THAWED")
                time.sleep(0.01)
            cg.write(d, "freezer.state", "FROZEN")
            state = cg.read(d, "freezer.state")
            if state == "FROZEN":
                return
            if state != "FREEZING":
                raise CgroupError(f"unexpected state {state} while freezing")
            time.sleep(0.001 * (i % 10))
        cg.write(d, "freezer.state", "THAWED")
        raise CgroupError("unable to freeze")

    def thaw(self) -> None:
        cg.write(self._dir("freezer", "thaw"), "freezer.state", "THAWED")

    def frozen(self) -> bool:
        d = self.paths.get("freezer")
        while d:
            state = cg.opt(d, "freezer.state")
            if state != "FREEZING":  # frozen itself, not only through a frozen ancestor
                return state == "FROZEN" and cg.opt(d, "freezer.self_freezing") != "0"
            time.sleep(0.001)
        return False

    def pids(self) -> list[int]:
        for sub in ("freezer", "devices", "memory", "pids", *self.paths):
            if sub in self.paths:
                return cg.procs(self.paths[sub])
        return []

    def stats(self) -> dict[str, Any]:
        p, hz = self.paths, os.sysconf("SC_CLK_TCK")
        if not self.exists():
            raise CgroupError(f"the container's cgroup {self.paths} does not exist")
        u: dict[str, Any] = {}
        t: dict[str, int] = {}
        s: dict[str, Any] = {"memory": {}, "pids": {}, "blkio": {}, "hugetlb": {}, "cpuset": {}}
        if d := p.get("cpuacct"):
            u["total"] = cg.num(cg.opt(d, "cpuacct.usage"))
            u["percpu"] = [int(x) for x in (cg.opt(d, "cpuacct.usage_percpu") or "").split()]
            rows = cg.rows(cg.opt(d, "cpuacct.usage_all"))[1:]
            u["percpu_kernel"] = [int(r[2]) for r in rows]
            u["percpu_user"] = [int(r[1]) for r in rows]
            ticks = cg.kv(cg.opt(d, "cpuacct.stat"))
            u["kernel"], u["user"] = (ticks.get(k, 0) * 10**9 // hz for k in ("system", "user"))
        if d := p.get("cpu"):
            c = cg.kv(cg.opt(d, "cpu.stat"))
            t = {"periods": c.get("nr_periods", 0), "throttledPeriods": c.get("nr_throttled", 0)}
            t["throttledTime"] = c.get("throttled_time", 0)
        s["cpu"] = {"usage": u, "throttling": t}
        if d := p.get("memory"):
            for key, pre in MEM:
                vals = (cg.num(cg.opt(d, f"memory.{pre}{f}")) for f in MEMFILES)
                s["memory"][key] = dict(
                    zip(("usage", "max", "limit", "failcnt"), vals, strict=True)
                )
            raw = s["memory"]["raw"] = cg.kv(cg.opt(d, "memory.stat"))
            s["memory"]["cache"] = raw.get("cache", 0)
        if d := p.get("pids"):
            s["pids"] = {
                "current": cg.num(cg.opt(d, "pids.current")),
                "limit": cg.num(cg.opt(d, "pids.max")),
            }
        if d := p.get("cpuset"):
            flags = (
                f for f in os.listdir(d) if f[:7] == "cpuset." and f[-4:] not in ("cpus", "mems")
            )
            s["cpuset"] = {f[7:]: cg.num(cg.opt(d, f)) for f in flags}  # cpu_exclusive, ...
            s["cpuset"].update({k: cg.ids(cg.opt(d, f"cpuset.{k}")) for k in ("cpus", "mems")})
        for pre in ("blkio.", "blkio.bfq.", "blkio.throttle.") if "blkio" in p else ():
            for key, f in (("ioServiceBytesRecursive", "bytes"), ("ioServicedRecursive", "d")):
                rows = cg.rows(cg.opt(p["blkio"], f"{pre}io_service{f}_recursive"))
                s["blkio"][key] = [
                    cg.blkio_entry(r[0], r[1], int(r[2])) for r in rows if len(r) == 3
                ]
            if s["blkio"]["ioServiceBytesRecursive"]:
                break  # CFQ's counters, else BFQ's, else the throttle ones, as runc reads them
        for f in os.listdir(p["hugetlb"]) if "hugetlb" in p else []:
            if f.endswith(".usage_in_bytes"):
                size, d = f.split(".")[1], p["hugetlb"]
                vals = (cg.num(cg.opt(d, f"hugetlb.{size}.{k}")) for k in MEMFILES if k[0] != "l")
                s["hugetlb"][size] = dict(zip(("usage", "max", "failcnt"), vals, strict=True))
        return s

    def destroy(self) -> None:
        cg.remove(sorted(set(self.paths.values())), self.created)

    def exists(self) -> bool:
        return any(os.path.isdir(d) for d in self.paths.values())

    def container_mounts(self) -> list[tuple[str, str]]:
        # like runc without a cgroup namespace: every v1 hierarchy (not the hybrid unified one)
        dirs = {self.mounts[s]: d for s, d in self.paths.items() if s}
        return [(os.path.basename(mnt), d) for mnt, d in dirs.items()]

    def to_state(self) -> dict[str, Any]:
        return {"version": 1, "paths": self.paths, "mounts": self.mounts, "created": self.created}
