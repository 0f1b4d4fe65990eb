"""runc_py.cgroups against the real kernel: real cgroup directories, real sleeping processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from runc_py.cgroups import (
    CgroupError,
    detect_version,
    from_state,
    mountinfo,
    new_manager,
    own_cgroups,
)

if TYPE_CHECKING:
    from runc_py.cgroups import Manager

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="cgroup tests need root to create cgroups"),
]

MIB = 1 << 20
FSTYPES = {mnt: fstype for _, mnt, fstype, _ in mountinfo()}
V1 = FSTYPES.get("/sys/fs/cgroup/memory") == "cgroup"
V2_MOUNT = next(
    (m for m in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified") if FSTYPES.get(m) == "cgroup2"), None
)
needs_v1 = pytest.mark.skipif(not V1, reason="no cgroup v1 memory hierarchy at /sys/fs/cgroup")
needs_v2 = pytest.mark.skipif(V2_MOUNT is None, reason="no cgroup2 mount on this host")


def rd(d: str, name: str) -> str:
    with open(f"{d}/{name}") as f:
        return f.read().strip()


def cgroup_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return {c: p for _, c, p in (ln.rstrip("\n").split(":", 2) for ln in f)}


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("State:"))


def sizes_bytes(size: str) -> int:
    """ "2MB" -> 2097152"""
    return int(size[:-2]) << {"KB": 10, "MB": 20, "GB": 30}[size[-2:]]


class Env:
    """Spawns sleepers and tracks managers; tears everything down even when a test fails."""

    def __init__(self) -> None:
        self.tag = f"stacklab-test-{uuid.uuid4().hex[:12]}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.managers: list[Manager] = []

    def manager(self, path: str | None, *, version: int | None = None) -> Manager:
        m = new_manager(path, self.tag, version=version)
        self.managers.append(m)
        return m

    def sleeper(self, m: Manager) -> int:
        """A child put into m before it execs `sleep`, so its memory is charged to m."""
        p = subprocess.Popen(["sh", "-c", "read go; exec sleep 60"], stdin=subprocess.PIPE)
        self.procs.append(p)
        m.apply(p.pid)
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.close()
        deadline = time.monotonic() + 10
        while rd(f"/proc/{p.pid}", "comm") != "sleep":
            assert time.monotonic() < deadline, "child never exec'd sleep"
            time.sleep(0.01)
        return p.pid

    def kill_all(self) -> None:
        for m in self.managers:
            try:
                m.thaw()  # a frozen task cannot act on SIGKILL
            except CgroupError:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)

    def cleanup(self) -> None:
        self.kill_all()
        for m in self.managers:
            try:
                m.destroy()
            except CgroupError:
                pass
        for mnt, fstype in FSTYPES.items():  # belt and braces: anything named after this test
            if fstype in ("cgroup", "cgroup2") and mnt.startswith("/sys/fs/cgroup/"):
                for d, _, _ in os.walk(mnt, topdown=False):
                    if self.tag in d:
                        os.rmdir(d)


@pytest.fixture
def env() -> Iterator[Env]:
    e = Env()
    try:
        yield e
    finally:
        e.cleanup()


def test_detect_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STACKLAB_CGROUP_VERSION", raising=False)
    assert detect_version() == (2 if FSTYPES.get("/sys/fs/cgroup") == "cgroup2" else 1)
    for v in (1, 2):
        monkeypatch.setenv("STACKLAB_CGROUP_VERSION", str(v))
        assert detect_version() == v
    monkeypatch.setenv("STACKLAB_CGROUP_VERSION", "3")
    with pytest.raises(CgroupError, match="must be 1 or 2"):
        detect_version()


@pytest.mark.parametrize("bad", ["/a/../b", "..", "x/../../y", "/"])
def test_bad_paths_rejected(bad: str) -> None:
    with pytest.raises(CgroupError, match="invalid cgroup path"):
        new_manager(bad, "id")


@needs_v1
def test_v1_path_resolution() -> None:
    own = own_cgroups()
    st = new_manager("/default/abc", "id", version=1).to_state()
    assert st["paths"]["memory"] == "/sys/fs/cgroup/memory/default/abc"
    assert st["paths"]["pids"] == "/sys/fs/cgroup/pids/default/abc"
    st = new_manager("foo/bar", "id", version=1).to_state()
    for sub in ("memory", "pids", "freezer"):  # under the runtime's own cgroup, per hierarchy
        assert st["paths"][sub] == f"/sys/fs/cgroup/{sub}{own[sub].rstrip('/')}/foo/bar"
    st = new_manager(None, "ctr-id", version=1).to_state()
    assert st["paths"]["memory"] == f"/sys/fs/cgroup/memory{own['memory'].rstrip('/')}/ctr-id"


@needs_v1
def test_v1_lifecycle(env: Env) -> None:
    m = env.manager(f"/{env.tag}/ctr", version=1)
    assert not m.exists()
    pid = env.sleeper(m)
    assert m.exists()
    seen = cgroup_of(pid)
    for sub in ("memory", "pids", "freezer", "cpu", "cpuset", "devices", "name=systemd"):
        if sub in seen:
            assert seen[sub] == f"/{env.tag}/ctr", sub
    if V2_MOUNT == "/sys/fs/cgroup/unified":  # hybrid: unlike runc, we leave cgroup2 alone
        assert seen[""] != f"/{env.tag}/ctr"
    assert m.pids() == [pid]

    m.set(
        {
            "memory": {"limit": 64 * MIB},
            "pids": {"limit": 10},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
        }
    )
    dirs = m.to_state()["paths"]
    assert rd(dirs["memory"], "memory.limit_in_bytes") == str(64 * MIB)
    assert rd(dirs["pids"], "pids.max") == "10"
    assert rd(dirs["cpu"], "cpu.shares") == "512"
    assert rd(dirs["cpu"], "cpu.cfs_quota_us") == "50000"
    assert rd(dirs["cpu"], "cpu.cfs_period_us") == "100000"

    m.set({"pids": {"limit": 20}})  # an update touches only what it names
    assert rd(dirs["pids"], "pids.max") == "20"
    assert rd(dirs["memory"], "memory.limit_in_bytes") == str(64 * MIB)

    m.freeze()
    assert m.frozen()
    assert rd(dirs["freezer"], "freezer.state") == "FROZEN"
    assert proc_state(pid).startswith("D")  # the v1 freezer parks tasks uninterruptibly
    m.thaw()
    assert not m.frozen()
    assert rd(dirs["freezer"], "freezer.state") == "THAWED"
    deadline = time.monotonic() + 5
    while not proc_state(pid).startswith("S"):  # woken by the thaw, back into nanosleep
        assert time.monotonic() < deadline, proc_state(pid)
        time.sleep(0.01)

    s = m.stats()
    assert s["memory"]["usage"]["usage"] > 0
    assert s["memory"]["usage"]["limit"] == 64 * MIB
    assert s["pids"] == {"current": 1, "limit": 20}
    assert s["cpu"]["usage"]["total"] > 0
    assert sum(s["cpu"]["usage"]["percpu"]) == s["cpu"]["usage"]["total"]

    mounts = dict(m.container_mounts())
    assert mounts["memory"] == dirs["memory"]
    assert "unified" not in mounts and "" not in mounts  # runc bind-mounts only v1 hierarchies
    if "name=systemd" in dirs:
        assert mounts["systemd"] == dirs["name=systemd"]

    again = from_state(m.to_state())  # as `runc-py delete` rebuilds it from state.json
    assert again.pids() == [pid]
    env.kill_all()
    again.destroy()
    assert not m.exists()
    assert not any(os.path.exists(d) for d in m.to_state()["created"])
    again.destroy()  # already gone: no error


@needs_v1
def test_v1_relative_path(env: Env) -> None:
    own = own_cgroups()
    m = env.manager(f"{env.tag}/ctr", version=1)
    pid = env.sleeper(m)
    assert cgroup_of(pid)["memory"] == f"{own['memory'].rstrip('/')}/{env.tag}/ctr"
    assert cgroup_of(pid)["pids"] == f"{own['pids'].rstrip('/')}/{env.tag}/ctr"
    env.kill_all()
    m.destroy()
    assert not m.exists()
    assert os.path.isdir(f"/sys/fs/cgroup/memory{own['memory']}")  # our own cgroup stays


@needs_v1
def test_v1_devices(env: Env) -> None:
    m = env.manager(f"/{env.tag}/ctr", version=1)
    m.apply(0)
    rules: list[dict[str, Any]] = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 5, "access": "r"},
    ]
    m.set({"devices": rules})
    assert rd(m.to_state()["paths"]["devices"], "devices.list").splitlines() == [
        "c 1:3 rwm",
        "c 5:* r",
    ]


@needs_v1
def test_v1_cpuset_and_swap(env: Env) -> None:
    m = env.manager(f"/{env.tag}/ctr", version=1)
    env.sleeper(m)  # joining needs a non-empty cpuset: the parent's was copied in
    dirs = m.to_state()["paths"]
    assert rd(dirs["cpuset"], "cpuset.cpus") == rd("/sys/fs/cgroup/cpuset", "cpuset.cpus")
    assert rd(f"/sys/fs/cgroup/cpuset/{env.tag}", "cpuset.mems") != ""
    m.set({"cpu": {"cpus": "0"}})
    assert rd(dirs["cpuset"], "cpuset.cpus") == "0"

    if not os.path.exists(f"{dirs['memory']}/memory.memsw.limit_in_bytes"):
        with pytest.raises(CgroupError, match="swap accounting is off"):
            m.set({"memory": {"limit": 64 * MIB, "swap": 128 * MIB}})
        return
    for limit, swap in ((64, 128), (256, 512), (32, 48), (-1, None)):  # grow, shrink, unlimited
        mem: dict[str, Any] = {"limit": limit * MIB if limit > 0 else -1, "swap": swap}
        if swap is not None:
            mem["swap"] = swap * MIB
        m.set({"memory": mem})
        if limit > 0:
            assert rd(dirs["memory"], "memory.limit_in_bytes") == str(limit * MIB)
            assert rd(dirs["memory"], "memory.memsw.limit_in_bytes") == str(mem["swap"])
    assert int(rd(dirs["memory"], "memory.memsw.limit_in_bytes")) > 1 << 60


@needs_v1
def test_v1_errors(env: Env) -> None:
    m = env.manager(f"/{env.tag}/ctr", version=1)
    m.apply(0)
    with pytest.raises(CgroupError, match="cgroup v1"):
        m.set({"unified": {"memory.high": "1000000"}})
    with pytest.raises(CgroupError, match="cannot set rdma"):
        m.set({"rdma": {"mlx5_1": {"hcaHandles": 3}}})
    with pytest.raises(CgroupError, match="failed to write"):
        m.set({"pids": {"limit": 10}, "cpu": {"cpus": "9999"}})


@pytest.fixture
def v2_root_control() -> Iterator[None]:
    """apply() enables controllers down from the root, as runc does; undo it at the root."""
    before = rd(str(V2_MOUNT), "cgroup.subtree_control").split()
    yield
    for c in rd(str(V2_MOUNT), "cgroup.subtree_control").split():
        if c not in before:
            try:
                with open(f"{V2_MOUNT}/cgroup.subtree_control", "w") as f:
                    f.write(f"-{c}")
            except OSError:
                pass  # in use by a cgroup that is not ours


@needs_v2
def test_v2_lifecycle(v2_root_control: None, env: Env) -> None:
    m = env.manager(f"/{env.tag}/ctr", version=2)
    d = f"{V2_MOUNT}/{env.tag}/ctr"
    assert m.container_mounts() == [("", d)]
    pid = env.sleeper(m)
    assert cgroup_of(pid)[""] == f"/{env.tag}/ctr"
    assert m.pids() == [pid]

    m.freeze()
    assert m.frozen()
    assert "frozen 1" in rd(d, "cgroup.events").splitlines()
    m.thaw()
    assert not m.frozen()
    assert "frozen 0" in rd(d, "cgroup.events").splitlines()

    assert m.stats()["cpu"]["usage"]["total"] > 0  # cpu.stat is there without any controller
    sizes = sorted(
        f.split(".")[1] for f in os.listdir(d) if f.startswith("hugetlb.") and f.endswith(".max")
    )
    if sizes:  # apply() enabled hugetlb for us, as runc enables every available controller
        m.set({"hugepageLimits": [{"pageSize": sizes[0], "limit": 4 * sizes_bytes(sizes[0])}]})
        assert rd(d, f"hugetlb.{sizes[0]}.max") == str(4 * sizes_bytes(sizes[0]))
        assert m.stats()["hugetlb"][sizes[0]] == {"usage": 0, "failcnt": 0}
    if "pids" in rd(str(V2_MOUNT), "cgroup.controllers").split():
        m.set({"pids": {"limit": 10}})
        assert rd(d, "pids.max") == "10"
        assert m.stats()["pids"] == {"current": 1, "limit": 10}
    else:  # a hybrid host: pids belongs to its v1 hierarchy
        with pytest.raises(CgroupError, match="pids controller is not available"):
            m.set({"pids": {"limit": 10}})
    m.set({"devices": [{"allow": False, "access": "rwm"}]})  # accepted, needs eBPF: ignored

    again = from_state(m.to_state())
    env.kill_all()
    again.destroy()
    assert not m.exists()
    assert not os.path.exists(f"{V2_MOUNT}/{env.tag}")
