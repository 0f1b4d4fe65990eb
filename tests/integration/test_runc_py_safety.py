"""runc-py's promises beyond runc's output: bad input changes nothing (acceptance 3), the trace
is continued (4), 200 lifecycles leak nothing (5), and the runtime's own processes inside a
container can't be used to reach the host (6: the classes of CVE-2019-5736 and CVE-2024-21626).
"""

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runc_py.spec import default_spec
from stacklab.testimage import build_rootfs

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, mounts and cgroups"),
]
RUNC_PY = str(Path(sys.executable).parent / "runc-py")
CGROUP_PARENT = f"stacklab-safety-{os.getpid()}"


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rootfs")
    build_rootfs(root)
    return root


class Runtime:
    def __init__(self, base: Path, rootfs: Path) -> None:
        self.base, self.rootfs = base, rootfs
        self.root = base / "state"
        self.env = dict(os.environ, STACKLAB_ROOT=str(base / "stack"))
        self.env.pop("TRACEPARENT", None)
        self.made: list[str] = []

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        # Files, not pipes: a created container's init keeps its stdio open, so a pipe would
        # not reach EOF when runc-py exits (the shim hands runc fifos for the same reason).
        with open(self.base / "out", "w+") as out, open(self.base / "err", "w+") as err:
            p = subprocess.run(
                [RUNC_PY, "--root", str(self.root), *args],
                stdout=out,
                stderr=err,
                timeout=timeout,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(p.args, p.returncode, out.read(), err.read())

    def bundle(self, cid: str, args: list[str], **edits: Any) -> Path:
        """A bundle on the shared read-only rootfs, its cgroup under our test parent."""
        spec = default_spec(terminal=False, args=args)
        spec["root"]["path"] = str(self.rootfs)
        spec["linux"]["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}"
        for key, value in edits.items():
            target = spec
            *path, last = key.split(".")
            for p in path:
                target = target.setdefault(p, {})
            target[last] = value
        d = self.base / "bundles" / cid
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(spec))
        self.made.append(cid)
        return d


@pytest.fixture
def rt(tmp_path: Path, rootfs: Path) -> Iterator[Runtime]:
    r = Runtime(tmp_path, rootfs)
    yield r
    for cid in r.made:
        r("delete", "--force", cid)
    for h in Path("/sys/fs/cgroup").iterdir():
        try:
            (h / CGROUP_PARENT).rmdir()
        except OSError:
            pass


def leftovers(rt: Runtime, cid: str) -> list[str]:
    """Everything a failed or finished container could leave behind."""
    found = []
    if (rt.root / cid).exists():
        found.append(f"state dir {rt.root / cid}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if str(rt.base) in line or str(rt.rootfs) in line:
            found.append(f"mount {line.split()[4]}")
    for h in Path("/sys/fs/cgroup").iterdir():
        if (h / CGROUP_PARENT / cid).exists():
            found.append(f"cgroup {h / CGROUP_PARENT / cid}")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if cmd.startswith(f"runc-py init {cid}") or cmd.startswith(f"runc-py exec {cid}"):
                found.append(f"process {proc.name}: {cmd}")
    return found


def broken_json(rt: Runtime, cid: str) -> Path:
    d = rt.bundle(cid, ["true"])
    (d / "config.json").write_text('{"ociVersion": "1.0.2", "process": {')
    return d


HOOK_FAIL = {"path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no; exit 3"]}
BAD_INPUT = {
    "malformed-config": (broken_json, "failed to parse config.json"),
    "missing-rootfs": (
        lambda rt, c: rt.bundle(c, ["true"], **{"root.path": "/nonexistent"}),
        "does not exist",
    ),
    "unknown-namespace": (
        lambda rt, c: rt.bundle(c, ["true"], **{"linux.namespaces": [{"type": "bogus"}]}),
        "unknown namespace type",
    ),
    "failing-createRuntime-hook": (
        lambda rt, c: rt.bundle(c, ["true"], **{"hooks.createRuntime": [HOOK_FAIL]}),
        "hook-said-no",
    ),
    "failing-createContainer-hook": (
        lambda rt, c: rt.bundle(c, ["true"], **{"hooks.createContainer": [HOOK_FAIL]}),
        "createContainer",
    ),
    "hook-timeout": (
        lambda rt, c: rt.bundle(
            c,
            ["true"],
            **{"hooks.prestart": [{"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}]},
        ),
        "timeout",
    ),
    "bad-mount": (
        lambda rt, c: rt.bundle(
            c, ["true"], mounts=[{"destination": "/x", "type": "nosuchfs", "source": "none"}]
        ),
        "nosuchfs",
    ),
    "missing-binary": (lambda rt, c: rt.bundle(c, ["/no/such/binary"]), "no such file"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_refused_and_leaves_nothing(rt: Runtime, case: str) -> None:
    make, phrase = BAD_INPUT[case]
    cid = f"bad-{case}-{uuid.uuid4().hex[:6]}"
    bundle = make(rt, cid)
    log = rt.base / "log.json"
    r = rt("--log", str(log), "--log-format", "json", "create", "--bundle", str(bundle), cid)
    assert r.returncode != 0
    assert phrase in r.stderr, r.stderr
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["level"] == "error" and phrase in last["msg"]
    assert "Traceback" not in r.stderr + log.read_text()
    assert leftovers(rt, cid) == []


@pytest.mark.parametrize("cid", ["a/b", "..", "../x", ".", "", "x y"])
def test_bad_ids_are_refused(rt: Runtime, cid: str) -> None:
    bundle = rt.bundle("good", ["true"])
    r = rt("create", "--bundle", str(bundle), cid)
    assert r.returncode == 1 and "invalid container ID format" in r.stderr
    assert not rt.root.exists() or list(rt.root.iterdir()) == []


def test_duplicate_id_keeps_the_first(rt: Runtime) -> None:
    bundle = rt.bundle("dup", ["sleep", "30"])
    assert rt("create", "--bundle", str(bundle), "dup").returncode == 0
    r = rt("create", "--bundle", str(bundle), "dup")
    assert r.returncode == 1 and "container with given ID already exists" in r.stderr
    assert json.loads(rt("state", "dup").stdout)["status"] == "created"
    assert rt("delete", "dup").returncode == 0
    assert leftovers(rt, "dup") == []


def test_traceparent_is_continued(rt: Runtime) -> None:
    bundle = rt.bundle("traced", ["true"])
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    env = dict(rt.env, TRACEPARENT=f"00-{trace_id}-{parent}-01")
    for args in (["create", "--bundle", str(bundle), "traced"], ["start", "traced"]):
        assert rt(*args, env=env).returncode == 0
    assert rt("delete", "--force", "traced").returncode == 0  # without a traceparent
    spans = [json.loads(x) for x in (rt.base / "stack/trace/spans.jsonl").read_text().splitlines()]
    by_name = {s["name"]: s for s in spans}
    for name in ("runc-py create", "runc-py start"):
        s = by_name[name]
        assert (s["trace_id"], s["parent_id"], s["layer"]) == (trace_id, parent, "runc-py")
        assert s["attrs"]["id"] == "traced" and s["end_ns"] > s["start_ns"] > 0
    fresh = by_name["runc-py delete"]
    assert fresh["parent_id"] is None and fresh["trace_id"] != trace_id


def our_mounts(rt: Runtime) -> list[str]:
    """The host's mounts that could be ours: not the whole table, which other programs on the
    machine change while the test runs. The container's own mounts live in its namespace."""
    return [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if any(p in line for p in (str(rt.base), str(rt.rootfs), "runc", "stacklab"))
    ]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_200_lifecycles_leak_nothing(rt: Runtime) -> None:
    bundle = rt.bundle("cycle", ["sleep", "60"])
    mounts_before = our_mounts(rt)
    fds_before = _fds()
    for i in range(200):
        cid = f"cycle-{i}"
        rt.made.append(cid)
        for args in (
            ["create", "--bundle", str(bundle), cid],
            ["start", cid],
            ["kill", cid, "KILL"],
            ["delete", "--force", cid],
        ):
            r = rt(*args)
            assert r.returncode == 0, (args, r.stderr)
    assert our_mounts(rt) == mounts_before
    assert _fds() == fds_before
    assert [f for i in range(200) for f in leftovers(rt, f"cycle-{i}")] == []
    assert rt("list", "-q").stdout == ""


def test_runtime_exe_cannot_be_reached_from_the_container(rt: Runtime) -> None:
    """While the init is blocked it is runc-py (a host python); a process exec'd into the
    container must not be able to open its /proc/PID/exe (non-dumpable), let alone write it."""
    bundle = rt.bundle("exe", ["true"])
    assert rt("create", "--bundle", str(bundle), "exe").returncode == 0
    probe = (
        "cat /proc/1/exe >/dev/null 2>&1 && echo read-ok || echo read-denied; "
        "(echo x >>/proc/1/exe) 2>/dev/null && echo write-ok || echo write-denied; "
        "readlink /proc/1/exe >/dev/null 2>&1 && echo link-ok || echo link-denied"
    )
    r = rt("exec", "exe", "sh", "-c", probe)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["read-denied", "write-denied", "link-denied"]


def test_no_runtime_fd_leaks_into_the_container(rt: Runtime) -> None:
    """Only stdio crosses into the container's process (and exec'd ones), so no fd can be a
    way back to a host directory; a cwd naming one (/proc/self/fd/N) is refused."""
    listing = "ls /proc/self/fd"
    bundle = rt.bundle("fds", ["sh", "-c", listing])
    r = rt("run", "--bundle", str(bundle), "fds")
    assert r.returncode == 0, r.stderr
    fds = r.stdout.split()
    assert fds[:4] == ["0", "1", "2", "3"]  # 3 is ls's own directory handle
    bundle = rt.bundle("fds2", ["sleep", "30"])
    assert rt("run", "-d", "--bundle", str(bundle), "fds2").returncode == 0
    r = rt("exec", "fds2", "sh", "-c", "ls /proc/self/fd")
    assert r.stdout.split() == ["0", "1", "2", "3"], r.stdout
    for n in range(3, 10):
        cid = f"cwd{n}"
        bundle = rt.bundle(cid, ["pwd"], **{"process.cwd": f"/proc/self/fd/{n}"})
        r = rt("run", "--bundle", str(bundle), cid)
        assert r.returncode != 0 or r.stdout.strip().startswith("/"), (n, r.stdout)
        assert leftovers(rt, cid) == []


def test_host_sysctls_are_refused(rt: Runtime) -> None:
    """A sysctl of no namespace of the container's own would change the host's kernel."""
    cases = {
        "kernel.core_pattern": "is not in a separate kernel namespace",
        "net.ipv4.ip_forward": "not allowed in the hosts network namespace",
        "net/../kernel/core_pattern": "invalid sysctl",
    }
    for key, phrase in cases.items():
        cid = f"sysctl-{uuid.uuid4().hex[:6]}"
        namespaces = [{"type": t} for t in ("pid", "mount", "uts", "ipc")]  # no network
        bundle = rt.bundle(
            cid, ["true"], **{"linux.sysctl": {key: "1"}, "linux.namespaces": namespaces}
        )
        r = rt("create", "--bundle", str(bundle), cid)
        assert r.returncode == 1 and phrase in r.stderr, (key, r.stderr)
        assert leftovers(rt, cid) == []


def test_delete_force_clears_a_half_created_container(rt: Runtime) -> None:
    """A create killed before it wrote state.json leaves its directory behind; `delete -f`
    clears it, so the id can be used again (runc does the same)."""
    (rt.root / "half").mkdir(parents=True)
    os.mkfifo(rt.root / "half" / "exec.fifo")
    bundle = rt.bundle("half", ["true"])
    assert "already exists" in rt("create", "--bundle", str(bundle), "half").stderr
    assert rt("delete", "half").returncode == 1
    assert rt("delete", "--force", "half").returncode == 0
    assert not (rt.root / "half").exists()
    assert rt("run", "--bundle", str(bundle), "half").returncode == 0


@pytest.mark.parametrize("version", ["1", "2"])
def test_device_rules_hold_on_cgroup_v1_and_v2(rt: Runtime, version: str) -> None:
    """Even with CAP_MKNOD, a container opens only the devices its rules allow: on v1 through
    devices.deny/allow, on v2 through the eBPF program runc-py attaches to its cgroup."""
    if version == "2" and not any(
        Path(p, "cgroup.controllers").exists() for p in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified")
    ):
        pytest.skip("no cgroup2 hierarchy mounted here")
    cid = f"devices-v{version}"
    caps = {k: ["CAP_MKNOD", "CAP_DAC_OVERRIDE"] for k in ("bounding", "effective", "permitted")}
    probe = (
        "cat /dev/null && echo null-ok; mknod /tmp/tun c 10 200 && echo mknod-ok; "
        "(exec 3</tmp/tun) 2>/dev/null && echo tun-opened || echo tun-denied"
    )
    mounts = [
        *default_spec()["mounts"],
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
    ]
    bundle = rt.bundle(cid, ["sh", "-c", probe], **{"process.capabilities": caps, "mounts": mounts})
    r = rt("run", "--bundle", str(bundle), cid, env=dict(rt.env, STACKLAB_CGROUP_VERSION=version))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["null-ok", "mknod-ok", "tun-denied"]
    assert leftovers(rt, cid) == []
