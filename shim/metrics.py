"""A container's cgroup statistics for Stats, like containerd/cgroups' `cgroup1.Stat` that the
runc shim calls (cgroup1/pids.go, cpuacct.go, cpu.go, memory.go): the files of each v1
controller the container's init is in, found through /proc/<pid>/cgroup.
"""

import os

from shim.api.cgroups.v1 import metrics_pb2 as v1

CGROUP_FS = "/sys/fs/cgroup"
USER_HZ = 100  # cpuacct.stat counts clock ticks

# memory.stat key -> MemoryStat field, where the names differ (the rest match as they are)
MEMORY_KEYS = {
    "pgpgin": "pg_pg_in",
    "pgpgout": "pg_pg_out",
    "pgfault": "pg_fault",
    "pgmajfault": "pg_maj_fault",
    "hierarchical_memsw_limit": "hierarchical_swap_limit",
    "total_pgpgin": "total_pg_pg_in",
    "total_pgpgout": "total_pg_pg_out",
    "total_pgfault": "total_pg_fault",
    "total_pgmajfault": "total_pg_maj_fault",
}


def is_v2() -> bool:
    return os.path.exists(os.path.join(CGROUP_FS, "cgroup.controllers"))


def controller_dirs(pid: int) -> dict[str, str]:
    """{controller: directory} for each v1 hierarchy `pid` is in."""
    dirs: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                if controller:
                    mount = os.path.join(CGROUP_FS, controllers)
                    if not os.path.isdir(mount):
                        mount = os.path.join(CGROUP_FS, controller)
                    dirs[controller] = mount + path
    return dirs


def _read(directory: str, name: str) -> str:
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read().strip()
    except OSError:
        return ""


def _int(directory: str, name: str) -> int:
    text = _read(directory, name)
    try:
        return int(text)
    except ValueError:
        return 0  # absent, or "max"


def _keyed(directory: str, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in _read(directory, name).splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            pass
    return out


def stat(pid: int) -> v1.Metrics:
    """The cgroup v1 Metrics of the cgroups `pid` is in."""
    dirs = controller_dirs(pid)
    m = v1.Metrics()
    if d := dirs.get("pids"):
        m.pids.current, m.pids.limit = _int(d, "pids.current"), _int(d, "pids.max")
    if d := dirs.get("cpuacct"):
        usage = m.cpu.usage
        usage.total = _int(d, "cpuacct.usage")
        usage.per_cpu.extend(int(v) for v in _read(d, "cpuacct.usage_percpu").split())
        ticks = _keyed(d, "cpuacct.stat")
        usage.user = ticks.get("user", 0) * 1_000_000_000 // USER_HZ
        usage.kernel = ticks.get("system", 0) * 1_000_000_000 // USER_HZ
    if d := dirs.get("cpu"):
        cpu = _keyed(d, "cpu.stat")
        m.cpu.throttling.periods = cpu.get("nr_periods", 0)
        m.cpu.throttling.throttled_periods = cpu.get("nr_throttled", 0)
        m.cpu.throttling.throttled_time = cpu.get("throttled_time", 0)
    if d := dirs.get("memory"):
        mem = m.memory
        fields = {f.name for f in mem.DESCRIPTOR.fields}
        for key, value in _keyed(d, "memory.stat").items():
            name = MEMORY_KEYS.get(key, key)
            if name in fields and name not in ("usage", "swap", "kernel", "kernel_tcp"):
                setattr(mem, name, value)
        for entry, prefix in (
            (mem.usage, "memory"),
            (mem.swap, "memory.memsw"),
            (mem.kernel, "memory.kmem"),
            (mem.kernel_tcp, "memory.kmem.tcp"),
        ):
            entry.usage = _int(d, f"{prefix}.usage_in_bytes")
            entry.limit = _int(d, f"{prefix}.limit_in_bytes")
            entry.max = _int(d, f"{prefix}.max_usage_in_bytes")
            entry.failcnt = _int(d, f"{prefix}.failcnt")
    return m
