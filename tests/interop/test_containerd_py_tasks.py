"""containerd-py runs containers: the real `ctr` 1.6 and our Python client drive its Containers
and Tasks services and its runtime v2 manager, over our shim (`containerd-shim-runpy-v2`, runtime
io.containerd.runpy.v2) and over containerd's own (`containerd-shim-runc-v2`), each with runc-py
or the real runc underneath. The acceptance of issue 5:

1. `ctr run --rm` prints what the container prints and exits with its status, on every pair;
2. `ctr run -d`, `ctr task …`, `ctr c …`, `ctr run -t`, and `ctr events` during one run;
3. SIGKILL containerd-py with five containers: the shims and containers live on, one exits
   meanwhile, and the restarted daemon reports four RUNNING and one STOPPED with its status;
4. fifty containers at once, and nothing of them left afterwards;
5. one trace from containerd-py's Tasks.Create through the shim down to `runc-py create`;
6. bad requests answered with containerd's status codes and messages, nothing half-created.

What real containerd answers was checked against containerd 1.6.20 (tests/interop/containerd.py)
with the same requests; the expected codes and messages below are its answers.

Everything lives in one short temp dir (`/tmp/cdpy-tasks-…`: our shim's sockets go under
`<dir>/containerd/s` only while `<dir>/containerd/s/<sha256>` fits in a unix socket path) except
what the real runc-v2 shim cannot move: its sockets in /run/containerd/s and the cgroups ctr names
`/<namespace>/<id>`; the namespace is per process, and the teardown removes both by name.
"""

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from containerd import missing
from containerd_py_daemon import ContainerdPy, start_containerd_py
from google.protobuf import any_pb2
from test_containerd_runc_py import run_in_pty

from containerd_py.api.services.containers.v1 import containers_pb2
from containerd_py.api.services.tasks.v1 import tasks_pb2
from containerd_py.client.client import Client
from containerd_py.client.services import Stub
from containerd_py.errdefs import AlreadyExists, ContainerdError, NotFound
from shim.api import typeurl
from shim.api.runc.options import oci_pb2 as runc_options
from shim.api.types import mount_pb2
from shim.api.types.task import task_pb2 as task_types
from stacklab import testimage

pytestmark = [pytest.mark.root, pytest.mark.interop]

NS = f"cdpy-tasks-{os.getpid()}"  # ctr's cgroups `/<ns>/<id>` are host-wide
RUNPY = "io.containerd.runpy.v2"
RUNC_V2 = "io.containerd.runc.v2"
TASK_DIR = "io.containerd.runtime.v2.task"
SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
REAL_SHIM_SOCKETS = Path("/run/containerd/s")  # containerd 1.6's runc-v2 shim: not movable
CGROUP_FS = Path("/sys/fs/cgroup")
RUNC_PY = str(Path(sys.executable).parent / "runc-py")
RUNC = shutil.which("runc") or "/usr/sbin/runc"
SUN_PATH_MAX = 107
NUL = b"\0"


@dataclass(frozen=True)
class Flavor:
    """Which shim runs a container, and which OCI runtime that shim drives."""

    shim: str  # "runpy" (ours), "runc-v2" (containerd's), "default" (ctr's: runc-v2)
    runtime: str  # "runc-py" or "runc"

    @property
    def runtime_name(self) -> str:
        return RUNPY if self.shim == "runpy" else RUNC_V2

    @property
    def real_shim(self) -> str:
        return "runc-v2" if self.shim == "default" else self.shim

    def __str__(self) -> str:
        return f"{self.shim}+{self.runtime}"


CTR_DEFAULT = Flavor("default", "runc")  # no --runtime: io.containerd.runc.v2 with runc
RUNPY_RUNCPY = Flavor("runpy", "runc-py")  # our shim's default runtime
RUNPY_RUNC = Flavor("runpy", "runc")  # --runtime-config-path, BinaryName = runc
RUNCV2_RUNCPY = Flavor("runc-v2", "runc-py")  # --runc-binary runc-py
RUNCV2_RUNC = Flavor("runc-v2", "runc")  # --runc-binary runc
BOTH_SHIMS = [RUNPY_RUNCPY, RUNCV2_RUNC]


# -- procfs ------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def parent(pid: int) -> int:
    try:
        return int(_stat(pid)[1])
    except (OSError, IndexError):
        return 0


def alive(pid: int) -> bool:
    """Running (a zombie is not: it only waits for its parent)."""
    try:
        return _stat(pid)[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def pstree() -> str:
    """`pstree -p` without the threads, for the human reading a failure."""
    for flags in ("-pT", "-p"):  # -T (hide threads) is psmisc 22.21+
        try:
            tree = subprocess.run(["pstree", flags], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as e:
            return f"(no pstree: {e})"
        if tree.returncode == 0:
            return tree.stdout
    return f"(pstree failed: {tree.stderr})"


def wait_for(condition: Callable[[], object], timeout: float = 10, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def chain_id(diff_ids: Sequence[str]) -> str:
    """The image's top chain ID: the snapshot a container's rootfs is prepared on."""
    chain = diff_ids[0]
    for diff_id in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
    return chain


def tasks_stub(client: Client) -> Stub:
    """The client's Tasks service (built here for a Client that does not offer it yet)."""
    stub = getattr(client, "tasks", None)
    if isinstance(stub, Stub):
        return stub
    return Stub(client.channel, tasks_pb2.DESCRIPTOR.services_by_name["Tasks"], client.metadata)


def containers_stub(client: Client) -> Stub:
    stub = getattr(client, "containers", None)
    if isinstance(stub, Stub):
        return stub
    service = containers_pb2.DESCRIPTOR.services_by_name["Containers"]
    return Stub(client.channel, service, client.metadata)


# -- the stack under test ----------------------------------------------------------------------


@dataclass
class Lab:
    """containerd-py with the busybox image in namespace NS, and everything a test needs to
    drive it with ctr and to find what it leaves on the host."""

    cd: ContainerdPy
    image: testimage.ImageInfo
    ns: str = NS
    ids: set[str] = field(default_factory=set)  # every container id used: shim sockets by name

    @property
    def dir(self) -> Path:
        return self.cd.dir

    @property
    def fifo_dir(self) -> Path:
        return self.dir / "fifo"

    @property
    def runc_v2_root(self) -> Path:
        """ctr's `--runc-root`: the runc-v2 shim gives its runtime `<this>/<namespace>`."""
        return self.dir / "runc-v2"

    @property
    def runtime_config(self) -> Path:
        """What `--runtime-config-path` hands our shim: the real runc as its runtime."""
        return self.dir / "runc.toml"

    @property
    def runtime_states(self) -> list[Path]:
        """The runtimes' state roots: our shim's ($STACKLAB_ROOT/runc/<ns>), the runc-v2's."""
        return [self.dir / "runc" / self.ns, self.runc_v2_root / self.ns]

    @property
    def bundles(self) -> Path:
        return self.dir / "state" / TASK_DIR / self.ns

    @property
    def work_dirs(self) -> Path:
        return self.dir / "root" / TASK_DIR / self.ns

    @property
    def shim_socket_dir(self) -> Path:
        return self.dir / "containerd" / "s"

    @property
    def spans_file(self) -> Path:
        return self.dir / "trace" / "spans.jsonl"

    def log_tail(self) -> str:
        return f"\ncontainerd-py log:\n{self.cd.log_tail(60)}"

    # -- ctr

    def command(self, *args: str) -> list[str]:
        return ["ctr", "-a", str(self.cd.socket), "-n", self.ns, *args]

    def ctr(self, *args: str, timeout: float = 60) -> "subprocess.CompletedProcess[str]":
        return self.cd.ctr(*args, namespace=self.ns, timeout=timeout)

    def runtime_flags(self, flavor: Flavor) -> list[str]:
        """`ctr run` / `ctr c create` flags that pick the shim and its runtime."""
        if flavor.shim == "runpy":
            if flavor.runtime == "runc":
                return ["--runtime", RUNPY, f"--runtime-config-path={self.runtime_config}"]
            return ["--runtime", RUNPY]
        flags = ["--runc-root", str(self.runc_v2_root)]
        if flavor.shim == "runc-v2":
            binary = RUNC_PY if flavor.runtime == "runc-py" else RUNC
            flags = ["--runtime", RUNC_V2, "--runc-binary", binary, *flags]
        return flags

    def task_options(self, flavor: Flavor) -> any_pb2.Any | None:
        """For a task of a container `ctr c create` made (which has no --runc-* flags): the
        options `ctr run` would have sent, so the runc-v2 shim's runtime state stays here."""
        if flavor.real_shim != "runc-v2":
            return None
        binary = RUNC_PY if flavor.runtime == "runc-py" else RUNC
        options = runc_options.Options(binary_name=binary, root=str(self.runc_v2_root))
        return typeurl.marshal_any(options)

    def run_args(
        self, cid: str, *cmd: str, flavor: Flavor = RUNPY_RUNCPY, flags: Sequence[str] = ("--rm",)
    ) -> list[str]:
        self.ids.add(cid)
        return [
            "run", *self.runtime_flags(flavor), "--fifo-dir", str(self.fifo_dir),
            *flags, self.image.ref, cid, *cmd,
        ]  # fmt: skip

    def run(
        self,
        cid: str,
        *cmd: str,
        flavor: Flavor = RUNPY_RUNCPY,
        flags: Sequence[str] = ("--rm",),
        timeout: float = 60,
    ) -> "subprocess.CompletedProcess[str]":
        return self.ctr(*self.run_args(cid, *cmd, flavor=flavor, flags=flags), timeout=timeout)

    def exec_args(self, cid: str, exec_id: str, *cmd: str, flags: Sequence[str] = ()) -> list[str]:
        return [
            "task", "exec", "--fifo-dir", str(self.fifo_dir), "--exec-id", exec_id,
            *flags, cid, *cmd,
        ]  # fmt: skip

    def ok(self, result: "subprocess.CompletedProcess[str]") -> str:
        assert result.returncode == 0, (
            f"{' '.join(map(str, result.args))}: exit {result.returncode}\n"
            f"{result.stderr}{self.log_tail()}"
        )
        return result.stdout

    def task_rows(self) -> dict[str, tuple[int, str]]:
        """`ctr task ls` as {id: (pid, status)}."""
        out = self.ctr("task", "ls").stdout.splitlines()[1:]
        return {f[0]: (int(f[1]), f[2]) for f in (line.split() for line in out) if len(f) >= 3}

    def tasks(self) -> dict[str, str]:
        return {cid: status for cid, (_, status) in self.task_rows().items()}

    def containers(self) -> list[str]:
        return self.ctr("containers", "ls", "-q").stdout.split()

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> str | None:
        now: list[str | None] = [None]

        def reached() -> bool:
            now[0] = self.tasks().get(cid)
            return now[0] == status

        wait_for(reached, timeout)
        return now[0]

    def client(self) -> Client:
        return self.cd.client(self.ns)

    def spec_for(self, cid: str, args: list[str]) -> dict[str, Any]:
        """The OCI spec `ctr` makes for the image (taken from `ctr c info` of a scratch
        container), with our args and ctr's cgroup path for `cid`."""
        scratch = f"{cid}-spec"
        self.ok(self.ctr("containers", "create", self.image.ref, scratch, "true"))
        try:
            spec: dict[str, Any] = json.loads(self.ok(self.ctr("containers", "info", scratch)))[
                "Spec"
            ]
        finally:
            self.ctr("containers", "rm", scratch)
        spec["process"]["args"] = args
        spec["linux"]["cgroupsPath"] = f"/{self.ns}/{cid}"
        return spec

    def spans(self) -> list[dict[str, Any]]:
        if not self.spans_file.exists():
            return []
        found = []
        for line in self.spans_file.read_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def ran_on(self, cid: str) -> tuple[str, str]:
        """(shim, runtime) that ran `cid`, from their spans: our shim and runc-py each record
        theirs (with the container id) in <dir>/trace/spans.jsonl; the real ones record none."""
        layers = {s.get("layer") for s in self.spans() if (s.get("attrs") or {}).get("id") == cid}
        return (
            "runpy" if "shim" in layers else "runc-v2",
            "runc-py" if "runc-py" in layers else "runc",
        )

    # -- what is on the host

    def cgroups(self) -> list[Path]:
        """Every cgroup under `/<ns>` in every hierarchy (the ns's own too), deepest first."""
        found: list[Path] = []
        for hierarchy in CGROUP_FS.iterdir() if CGROUP_FS.is_dir() else []:
            top = hierarchy / self.ns
            if top.is_dir():
                found += [Path(d) for d, _, _ in os.walk(top)]
        return sorted(found, key=lambda p: len(p.parts), reverse=True)

    def shim_pids(self) -> list[int]:
        """Shims serving containerd-py (theirs and ours: `-address <our socket>`)."""
        address = str(self.cd.socket).encode() + b"\0"
        return sorted(
            pid
            for pid in all_pids()
            if pid != os.getpid()
            and b"containerd-shim" in (line := cmdline(pid))
            and address in line
        )

    def mounts(self) -> list[str]:
        """Mount points of mounts that name our dir (the point or, for overlay, its layers)."""
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if f"{self.dir}/" in line:
                points.append(line.split()[4].replace("\\040", " "))
        return points

    def shim_sockets(self) -> list[Path]:
        """Our shims' sockets in <dir>/containerd/s; the runc-v2 shim's (and ours, when the
        dir is too deep) in /run/containerd/s, named sha256(<address>/<ns>/<id>)."""
        found = sorted(self.shim_socket_dir.iterdir()) if self.shim_socket_dir.is_dir() else []
        for cid in sorted(self.ids):
            key = f"{self.cd.socket}/{self.ns}/{cid}".encode()
            path = REAL_SHIM_SOCKETS / hashlib.sha256(key).hexdigest()
            if path.exists():
                found.append(path)
        return found

    def stray(self) -> list[str]:
        """What the host holds of our containers, in words; [] when nothing."""
        found = []
        for what, d in (
            ("bundles", self.bundles),
            ("bundle work dirs", self.work_dirs),
            *(("runtime state", s) for s in self.runtime_states),
        ):
            if d.is_dir() and (names := sorted(os.listdir(d))):
                found.append(f"{what} in {d}: {names}")
        if mounts := self.mounts():
            found.append(f"mounts: {mounts}")
        if cgroups := [str(c) for c in self.cgroups() if c.name != self.ns]:
            found.append(f"cgroups: {cgroups}")
        if shims := self.shim_pids():
            found.append(f"shims: {[(p, cmdline(p).replace(NUL, b' ').decode()) for p in shims]}")
        if sockets := self.shim_sockets():
            found.append(f"shim sockets: {[str(s) for s in sockets]}")
        return found

    def leftovers(self, timeout: float = 10) -> list[str]:
        """Tasks, containers, active snapshots and `stray()`; shims exit a moment after their
        task's delete, so this waits a little for the host to be clean before it reports."""
        found: list[str] = []

        def clean() -> bool:
            found.clear()
            if tasks := self.tasks():
                found.append(f"tasks: {tasks}")
            if containers := self.containers():
                found.append(f"containers: {containers}")
            rows = [r.split() for r in self.ctr("snapshots", "ls").stdout.splitlines()[1:]]
            if active := [r[0] for r in rows if r and r[-1] != "Committed"]:
                found.append(f"snapshots: {active}")
            found.extend(self.stray())
            return not found

        wait_for(clean, timeout, 0.2)
        return found

    # -- cleanup

    def reset(self) -> None:
        """Kill and remove every task and container, as a test that failed half-way needs."""
        tasks = self.tasks()
        for cid, status in tasks.items():
            if status == "PAUSED":
                self.ctr("task", "resume", cid)
            self.ctr("task", "kill", "-a", "-s", "KILL", cid)
        for cid in tasks:
            self.ctr("task", "rm", "-f", cid)
        for cid in self.containers():
            self.ids.add(cid)
            self.ctr("containers", "rm", cid)
        for key in [r.split()[0] for r in self.ctr("snapshots", "ls").stdout.splitlines()[1:]]:
            if key in self.ids:
                self.ctr("snapshots", "rm", key)

    def scrub(self, cgroup_roots: bool = False) -> None:
        """Take away what reset() could not: processes (shims, runtimes, containers), mounts,
        cgroups, shim sockets, bundles and runtime state. The daemon itself is left alone."""
        for cg in self.cgroups():  # a frozen task cannot die
            with contextlib.suppress(OSError):
                if (cg / "freezer.state").exists():
                    (cg / "freezer.state").write_text("THAWED")
        needle = f"{self.dir}/".encode()
        keep = {os.getpid(), self.cd.proc.pid}

        def processes() -> set[int]:
            pids = {p for p in all_pids() if needle in cmdline(p)}
            for cg in self.cgroups():
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(p) for p in (cg / "cgroup.procs").read_text().split())
            return pids - keep

        def killed() -> bool:
            pids = processes()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return not pids

        wait_for(killed, 10, 0.1)
        for point in sorted(self.mounts(), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        for cg in self.cgroups():
            if cg.name == self.ns and not cgroup_roots:
                continue
            wait_for(functools.partial(_rmdir, cg), 2)  # busy while its last task exits
        for sock in self.shim_sockets():
            sock.unlink(missing_ok=True)
        for d in (self.bundles, self.work_dirs, *self.runtime_states):
            shutil.rmtree(d, ignore_errors=True)


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def stack() -> Iterator[Lab]:
    if reason := missing():
        pytest.skip(reason)
    if not Path(RUNC).exists():
        pytest.skip("the real runc is not installed (Debian package `runc`)")
    directory = Path(tempfile.mkdtemp(prefix="cdpy-tasks-", dir="/tmp"))
    try:
        with start_containerd_py(directory) as cd:
            image = testimage.build_image_layout(directory / "layout")
            lab = Lab(cd, image)
            try:
                lab.fifo_dir.mkdir()
                lab.runtime_config.write_text(f'BinaryName = "{RUNC}"\n')
                archive = directory / "busybox.oci.tar"
                testimage.write_oci_archive(image.layout, archive)
                lab.ok(lab.ctr("images", "import", str(archive), timeout=120))
                yield lab
            finally:
                if cd.proc.poll() is None:
                    with contextlib.suppress(subprocess.SubprocessError, OSError):
                        lab.reset()
                lab.scrub(cgroup_roots=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def lab(stack: Lab) -> Iterator[Lab]:
    """The module's containerd-py, checked after each test: no task, container, active
    snapshot, bundle, runtime state, mount, cgroup, shim or shim socket may be left. Whatever
    is left is then removed, so that one failed test does not fail the next."""
    yield stack
    if stack.cd.proc.poll() is not None:  # a test that killed it and failed before restarting
        stack.cd.start()
    left = stack.leftovers()
    if left:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            stack.reset()
        stack.scrub()
    assert not left, "left behind: " + "; ".join(left) + stack.log_tail()


def test_shim_sockets_fit_under_the_temp_dir(lab: Lab) -> None:
    """The premise of the leftover checks: our shims' sockets go under <dir>/containerd/s."""
    probe = lab.shim_socket_dir / ("0" * 64)
    assert len(str(probe).encode()) <= SUN_PATH_MAX, probe


# -- 1. ctr run --rm ---------------------------------------------------------------------------

RUN_FLAVORS = [CTR_DEFAULT, RUNPY_RUNCPY, RUNPY_RUNC, RUNCV2_RUNCPY, RUNCV2_RUNC]


@pytest.mark.parametrize("flavor", RUN_FLAVORS, ids=str)
def test_run_rm_echo_and_exit_status(lab: Lab, flavor: Flavor) -> None:
    cid = f"hello-{flavor.shim}-{flavor.runtime}"
    hello = lab.run(cid, "echo", "hello", flavor=flavor)
    assert (hello.returncode, hello.stdout, hello.stderr) == (0, "hello\n", ""), lab.log_tail()
    assert lab.ran_on(cid) == (flavor.real_shim, flavor.runtime), "not run by what ctr asked for"

    cid = f"exit3-{flavor.shim}-{flavor.runtime}"
    exit3 = lab.run(cid, "sh", "-c", "echo out; echo err >&2; exit 3", flavor=flavor)
    assert (exit3.returncode, exit3.stdout, exit3.stderr) == (3, "out\n", "err\n"), lab.log_tail()


# -- 2. ctr run -d, task …, c …, run -t, events ------------------------------------------------


@pytest.mark.parametrize("flavor", BOTH_SHIMS, ids=str)
def test_detached_task_and_container_commands(lab: Lab, flavor: Flavor) -> None:
    cid = f"life-{flavor.shim}"
    lab.ok(lab.run(cid, "sleep", "1000", flavor=flavor, flags=("-d",)))
    pid, status = lab.task_rows()[cid]
    assert status == "RUNNING" and pid > 0
    assert parent(pid) in lab.shim_pids(), f"pid 1 of {cid} is not its shim's child\n{pstree()}"

    rows = [line.split() for line in lab.ok(lab.ctr("c", "ls")).splitlines()[1:]]
    listed = {r[0]: r[1:] for r in rows if r}
    assert listed == {cid: [lab.image.ref, flavor.runtime_name]}
    info = json.loads(lab.ok(lab.ctr("c", "info", cid)))
    assert (info["ID"], info["Image"], info["Runtime"]["Name"]) == (
        cid,
        lab.image.ref,
        flavor.runtime_name,
    )
    assert (info["SnapshotKey"], info["Snapshotter"]) == (cid, "overlayfs")
    assert info["Spec"]["process"]["args"] == ["sleep", "1000"]

    ps = lab.ok(lab.ctr("task", "ps", cid))
    assert [int(line.split()[0]) for line in ps.splitlines()[1:]] == [pid], ps

    ex = lab.ctr(*lab.exec_args(cid, "e1", "sh", "-c", "echo in-exec; id -u; exit 5"))
    assert (ex.returncode, ex.stdout) == (5, "in-exec\n0\n"), ex.stderr + lab.log_tail()

    lab.ok(lab.ctr("task", "pause", cid))
    assert lab.tasks()[cid] == "PAUSED"
    lab.ok(lab.ctr("task", "resume", cid))
    assert lab.tasks()[cid] == "RUNNING"

    metrics = lab.ok(lab.ctr("task", "metrics", cid))
    assert cid in metrics.splitlines()[1], metrics
    usage = re.search(r"^memory\.usage(?:_in_bytes)?\s+(\d+)", metrics, re.M)
    assert usage and int(usage[1]) > 0, metrics
    pids = re.search(r"^pids\.current\s+(\d+)", metrics, re.M)
    assert pids and int(pids[1]) == 1, metrics

    lab.ok(lab.ctr("task", "kill", "-s", "KILL", cid))
    assert lab.wait_status(cid, "STOPPED") == "STOPPED", lab.log_tail()
    deleted = lab.ctr("task", "delete", cid)
    assert deleted.returncode == 0 and "exit code 137" in deleted.stderr, deleted.stderr
    assert cid not in lab.tasks()
    lab.ok(lab.ctr("c", "rm", cid))
    assert lab.containers() == []


@pytest.mark.parametrize("flavor", BOTH_SHIMS, ids=str)
def test_run_tty(lab: Lab, flavor: Flavor) -> None:
    argv = lab.command(
        *lab.run_args(f"tty-{flavor.shim}", "sh", "-c", "tty; echo ok", flavor=flavor,
                      flags=("-t", "--rm"))
    )  # fmt: skip
    rc, out = run_in_pty(argv)
    assert rc == 0, out + lab.log_tail()
    assert "/dev/pts/0\nok\n" in out, repr(out)


EVENT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \+0000 UTC (?P<ns>\S+) (?P<topic>/\S+) (?P<json>.*)$"
)
RUN_TOPICS = [
    "/containers/create",
    "/tasks/create",
    "/tasks/start",
    "/tasks/exit",
    "/tasks/delete",
    "/containers/delete",
]


def run_events(text: str, ns: str, cid: str) -> list[tuple[str, dict[str, Any]]]:
    """The /containers/* and /tasks/* events of container `cid` in `ctr events` output."""
    found = []
    for line in text.splitlines():
        m = EVENT_LINE.match(line)
        if not m or m["ns"] != ns or not m["topic"].startswith(("/containers/", "/tasks/")):
            continue
        event = json.loads(m["json"])
        if event.get("container_id", event.get("id")) == cid:
            found.append((m["topic"], event))
    return found


@pytest.mark.parametrize("flavor", BOTH_SHIMS, ids=str)
def test_events_of_one_run(lab: Lab, flavor: Flavor) -> None:
    """`ctr events` (a subprocess writing to a file) sees one `ctr run --rm` in order."""
    cid = f"events-{flavor.shim}"
    out = lab.dir / f"events-{flavor.shim}.txt"
    with open(out, "w") as f:
        events = subprocess.Popen(
            lab.command("events"), stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT
        )
    try:
        # `ctr events` listens once it shows an event: make namespace events until it does.
        probe = f"{lab.ns}-probe"

        def listening() -> bool:
            lab.cd.ctr("namespaces", "create", probe)
            lab.cd.ctr("namespaces", "rm", probe)
            return f'/namespaces/create {{"name":"{probe}"' in out.read_text()

        assert wait_for(listening, 10, 0.2), f"ctr events shows nothing:\n{out.read_text()}"
        run = lab.run(cid, "sh", "-c", "exit 3", flavor=flavor)
        assert run.returncode == 3, run.stderr + lab.log_tail()
        wait_for(lambda: len(run_events(out.read_text(), lab.ns, cid)) >= len(RUN_TOPICS), 10)
    finally:
        events.terminate()
        events.wait(10)
    text = out.read_text()
    seen = run_events(text, lab.ns, cid)
    assert [topic for topic, _ in seen] == RUN_TOPICS, f"ctr events:\n{text}{lab.log_tail()}"
    by_topic = dict(seen)
    pid = by_topic["/tasks/create"]["pid"]
    assert by_topic["/tasks/start"]["pid"] == by_topic["/tasks/exit"]["pid"] == pid
    assert by_topic["/tasks/exit"]["exit_status"] == 3, text
    assert by_topic["/containers/create"]["runtime"]["name"] == flavor.runtime_name


# -- 3. SIGKILL containerd-py while containers run ---------------------------------------------

# Exits 7 once /go exists in its rootfs: the test makes it exit while containerd-py is down.
EXIT_7_ON_GO = "while [ ! -e /go ]; do sleep 0.1; done; exit 7"


def assert_tree(lab: Lab, daemons: set[int], inits: dict[str, int], shims: dict[str, int]) -> None:
    """Every shim serves its container's pid 1 and none is a child of containerd-py."""
    tree = pstree()
    for cid, shim in shims.items():
        assert b"containerd-shim" in cmdline(shim), f"{cid}: {shim} is no shim\n{tree}"
        assert parent(shim) not in daemons, f"{cid}: shim {shim} is containerd-py's child\n{tree}"
        assert comm(parent(shim)) not in ("containerd-py", "containerd"), f"{cid}\n{tree}"
        if alive(inits[cid]):
            assert parent(inits[cid]) == shim, f"{cid}: pid 1 is not its shim's child\n{tree}"
    children = [p for p in all_pids() if parent(p) in daemons]
    shim_children = [p for p in children if b"containerd-shim" in cmdline(p)]
    assert not shim_children, f"shims that are containerd-py's children: {shim_children}\n{tree}"


def test_sigkill_containerd_py_while_five_containers_run(lab: Lab) -> None:
    running = {
        "keep-runpy-runcpy": RUNPY_RUNCPY,
        "keep-runpy-runc": RUNPY_RUNC,
        "keep-runcv2-runcpy": RUNCV2_RUNCPY,
        "keep-runcv2-runc": RUNCV2_RUNC,
    }
    exits = "exits-7"
    for cid, flavor in running.items():
        lab.ok(lab.run(cid, "sleep", "1000", flavor=flavor, flags=("-d",)))
    lab.ok(lab.run(exits, "sh", "-c", EXIT_7_ON_GO, flags=("-d",)))
    everyone = [*running, exits]
    rows = lab.task_rows()
    assert {cid: rows[cid][1] for cid in everyone} == dict.fromkeys(everyone, "RUNNING")
    inits = {cid: rows[cid][0] for cid in everyone}
    shims = {cid: parent(pid) for cid, pid in inits.items()}
    assert len(set(shims.values())) == len(everyone), f"one shim per container\n{pstree()}"
    old = lab.cd.proc.pid
    assert_tree(lab, {old}, inits, shims)

    lab.cd.kill()
    (Path(f"/proc/{inits[exits]}/root") / "go").touch()
    assert wait_for(lambda: not alive(inits[exits])), f"{exits} did not exit\n{pstree()}"
    died = [cid for cid in running if not alive(inits[cid]) or not alive(shims[cid])]
    assert not died, f"died with containerd-py: {died}\n{pstree()}"
    lab.cd.start()

    assert_tree(lab, {old, lab.cd.proc.pid}, inits, shims)
    status = {cid: pid_status for cid, pid_status in lab.task_rows().items() if cid in everyone}
    expected = {cid: (inits[cid], "RUNNING") for cid in running}
    assert status == {**expected, exits: (inits[exits], "STOPPED")}, lab.log_tail()
    with lab.client() as client:
        got = tasks_stub(client).Get(tasks_pb2.GetRequest(container_id=exits)).process
    assert (got.pid, got.status, got.exit_status) == (inits[exits], task_types.STOPPED, 7)

    # the new containerd-py drives them all
    for cid in running:
        lab.ok(lab.ctr("task", "kill", "-s", "KILL", cid))
    for cid in running:
        assert lab.wait_status(cid, "STOPPED") == "STOPPED", lab.log_tail()
        deleted = lab.ctr("task", "delete", cid)
        assert deleted.returncode == 0 and "exit code 137" in deleted.stderr, deleted.stderr
    deleted = lab.ctr("task", "delete", exits)
    assert deleted.returncode == 0 and "exit code 7" in deleted.stderr, deleted.stderr
    for cid in everyone:
        lab.ok(lab.ctr("c", "rm", cid))
    # the fixture then checks that the shims went with their tasks, and everything else


# -- 4. fifty at once --------------------------------------------------------------------------


def test_fifty_containers_at_once(lab: Lab) -> None:
    """45 on our shim (40 runc-py, 5 runc), 5 on the runc-v2 shim (runc), all `ctr run --rm`
    at the same moment; each prints its own id, and nothing of any is left."""
    flavors = {
        f"many-{i:02d}": RUNCV2_RUNC if i % 10 == 3 else RUNPY_RUNC if i % 10 == 7 else RUNPY_RUNCPY
        for i in range(50)
    }

    def one(cid: str) -> tuple[int, str, str]:
        try:
            done = lab.run(cid, "sh", "-c", f"echo {cid}", flavor=flavors[cid], timeout=240)
        except subprocess.TimeoutExpired:
            return -1, "", "ctr run timed out"
        return done.returncode, done.stdout, done.stderr

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(flavors)) as pool:
        results = dict(zip(flavors, pool.map(one, flavors), strict=True))
    elapsed = time.monotonic() - started
    failed = {cid: r for cid, r in results.items() if r[:2] != (0, f"{cid}\n")}
    assert not failed, f"{len(failed)} of 50 failed ({elapsed:.1f}s): {failed}{lab.log_tail()}"
    left = lab.leftovers(timeout=30)
    assert not left, f"after 50 runs ({elapsed:.1f}s): " + "; ".join(left) + lab.log_tail()
    print(f"50 containers run and removed in {elapsed:.1f}s")


# -- 5. one trace ------------------------------------------------------------------------------


def test_trace_through_tasks_create(lab: Lab) -> None:
    """A `ctr run` done with our client carrying a traceparent: containerd-py's Tasks.Create →
    the shim's Task.Create → `runc-py create`, one trace with its parents linked (and the same
    for Start)."""
    cid = "traced"
    lab.ids.add(cid)
    trace_id, root = os.urandom(16).hex(), os.urandom(8).hex()
    spec = lab.spec_for(cid, ["sh", "-c", "exit 4"])
    container = containers_pb2.Container(
        id=cid,
        image=lab.image.ref,
        runtime=containers_pb2.Container.Runtime(name=RUNPY),
        spec=any_pb2.Any(type_url=SPEC_TYPE, value=json.dumps(spec).encode()),
        snapshotter="overlayfs",
        snapshot_key=cid,
    )
    with lab.client() as plain:
        client = plain.with_traceparent(f"00-{trace_id}-{root}-01")
        tasks = tasks_stub(client)
        with client.temporary_lease() as leased:  # as ctr does while it sets a container up
            mounts = leased.prepare(cid, chain_id(lab.image.diff_ids))
            containers_stub(leased).Create(
                containers_pb2.CreateContainerRequest(container=container)
            )
        created = tasks.Create(tasks_pb2.CreateTaskRequest(container_id=cid, rootfs=mounts))
        tasks.Start(tasks_pb2.StartRequest(container_id=cid))
        waited = tasks.Wait(tasks_pb2.WaitRequest(container_id=cid), timeout=60)
        deleted = tasks.Delete(tasks_pb2.DeleteTaskRequest(container_id=cid))
        containers_stub(client).Delete(containers_pb2.DeleteContainerRequest(id=cid))
    assert (waited.exit_status, deleted.exit_status, deleted.pid) == (4, 4, created.pid)

    def trace() -> list[dict[str, Any]]:
        return [s for s in lab.spans() if s.get("trace_id") == trace_id]

    wanted = {"Tasks.Create", "Task.Create", "runc-py create", "Tasks.Start", "Task.Start"}
    wait_for(lambda: wanted <= {s["name"] for s in trace()}, 5)
    spans = trace()
    names = "\n".join(
        f"{s['layer']:14} {s['name']:18} {s['parent_id']} → {s['span_id']}" for s in spans
    )

    def one(name: str, layer: str, parent_span: str) -> dict[str, Any]:
        found = [s for s in spans if s["name"] == name and s["parent_id"] == parent_span]
        assert len(found) == 1, f"no single {name!r} under {parent_span}:\n{names}"
        assert found[0]["layer"] == layer, found[0]
        return found[0]

    for verb in ("Create", "Start"):
        daemon = one(f"Tasks.{verb}", "containerd-py", root)
        shim = one(f"Task.{verb}", "shim", daemon["span_id"])
        runtime = one(f"runc-py {verb.lower()}", "runc-py", shim["span_id"])
        assert daemon["pid"] == lab.cd.proc.pid, daemon
        assert len({daemon["pid"], shim["pid"], runtime["pid"]}) == 3, names
        assert (runtime.get("attrs") or {}).get("id") == cid, runtime
    ids = {s["span_id"] for s in spans}
    orphans = [s for s in spans if s["parent_id"] not in ids | {root}]
    assert not orphans, f"spans of the trace whose parent is not in it:\n{names}"


# -- 6. bad requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("rootfs", ["mount-to-nowhere", "snapshot-gone"])
@pytest.mark.parametrize("flavor", BOTH_SHIMS, ids=str)
def test_task_create_without_a_rootfs(lab: Lab, flavor: Flavor, rootfs: str) -> None:
    """Tasks.Create whose rootfs cannot be mounted, or for a container whose snapshot is gone
    (no rootfs at all): real containerd answers UNKNOWN "failed to create shim task: <the shim's
    reason>: unknown" and keeps no task; here also no bundle, shim, mount or cgroup."""
    cid = f"norootfs-{flavor.shim}-{rootfs}"
    lab.ids.add(cid)
    lab.ok(lab.ctr("c", "create", *lab.runtime_flags(flavor)[:2], lab.image.ref, cid, "true"))
    if rootfs == "snapshot-gone":
        lab.ok(lab.ctr("snapshots", "rm", cid))
        mounts: list[mount_pb2.Mount] = []
        reason = 'exec: "true": executable file not found in $PATH'
    else:
        nowhere = f"lowerdir={lab.dir}/nowhere/a:{lab.dir}/nowhere/b"
        mounts = [mount_pb2.Mount(type="overlay", source="overlay", options=[nowhere])]
        reason = "no such file or directory"
    request = tasks_pb2.CreateTaskRequest(container_id=cid, rootfs=mounts)
    if (options := lab.task_options(flavor)) is not None:
        request.options.CopyFrom(options)
    with lab.client() as client:
        tasks = tasks_stub(client)
        with pytest.raises(ContainerdError) as failed:
            tasks.Create(request)
        with pytest.raises(NotFound, match=f"^task {cid} not found$"):
            tasks.Get(tasks_pb2.GetRequest(container_id=cid))
    assert cid not in lab.tasks()
    assert wait_for(lambda: not lab.stray()), "half-created: " + "; ".join(lab.stray())
    lab.ok(lab.ctr("c", "rm", cid))
    code, message = failed.value.code, str(failed.value)
    worded = bool(re.fullmatch(r"failed to create shim task: .+: unknown", message))
    assert (code, worded) == ("UNKNOWN", True), (
        f"containerd answers UNKNOWN 'failed to create shim task: …: unknown'; got {code} {message!r}"
    )
    assert reason.lower() in message.lower(), message


def test_duplicate_container_id_and_missing_snapshot(lab: Lab) -> None:
    cid = "dup"
    lab.ids.add(cid)
    lab.ok(lab.ctr("c", "create", "--runtime", RUNPY, lab.image.ref, cid, "true"))
    again = lab.ctr("c", "create", "--runtime", RUNPY, lab.image.ref, cid, "true")
    # ctr prepares the snapshot (named after the container) first: that is what it trips on
    assert (again.returncode, again.stderr) == (1, f'ctr: snapshot "{cid}": already exists\n')
    spec = lab.spec_for(cid, ["true"])
    container = containers_pb2.Container(
        id=cid,
        image=lab.image.ref,
        runtime=containers_pb2.Container.Runtime(name=RUNPY),
        spec=any_pb2.Any(type_url=SPEC_TYPE, value=json.dumps(spec).encode()),
        snapshotter="overlayfs",
        snapshot_key=cid,
    )
    with lab.client() as client, pytest.raises(AlreadyExists) as exists:
        containers_stub(client).Create(containers_pb2.CreateContainerRequest(container=container))
    assert str(exists.value) == f'container "{cid}": already exists'
    assert lab.containers() == [cid]
    info = json.loads(lab.ok(lab.ctr("c", "info", cid)))
    assert info["Spec"]["process"]["args"] == ["true"], "the first container was changed"

    # its snapshot taken away: ctr asks Snapshots.Mounts before Tasks.Create, and stops there
    lab.ok(lab.ctr("snapshots", "rm", cid))
    start = lab.ctr("task", "start", "--fifo-dir", str(lab.fifo_dir), cid)
    expected = f"ctr: snapshot {cid} does not exist: not found\n"
    assert (start.returncode, start.stderr) == (1, expected), lab.log_tail()
    assert cid not in lab.tasks() and not lab.stray(), lab.stray()
    lab.ok(lab.ctr("c", "rm", cid))


@pytest.mark.parametrize("flavor", BOTH_SHIMS, ids=str)
def test_exec_id_in_use_then_kill_after_exit(lab: Lab, flavor: Flavor) -> None:
    cid = f"execdup-{flavor.shim}"
    lab.ok(lab.run(cid, "sleep", "1000", flavor=flavor, flags=("-d",)))
    lab.ok(lab.ctr(*lab.exec_args(cid, "e1", "sleep", "1000", flags=("-d",))))
    again = lab.ctr(*lab.exec_args(cid, "e1", "echo", "twice", flags=("-d",)))
    assert (again.returncode, again.stderr) == (1, "ctr: id e1: already exists\n"), lab.log_tail()
    ps = lab.ok(lab.ctr("task", "ps", cid))
    assert len(ps.splitlines()[1:]) == 2, f"init and the first e1 only:\n{ps}"

    lab.ok(lab.ctr("task", "kill", "-s", "KILL", cid))
    assert lab.wait_status(cid, "STOPPED") == "STOPPED", lab.log_tail()
    # real containerd says this, with either shim
    kill = lab.ctr("task", "kill", cid)
    assert (kill.returncode, kill.stderr) == (1, "ctr: process already finished: not found\n")
    with lab.client() as client, pytest.raises(NotFound, match="process already finished"):
        tasks_stub(client).Kill(tasks_pb2.KillRequest(container_id=cid, signal=9))
    deleted = lab.ctr("task", "delete", cid)
    assert deleted.returncode == 0 and "exit code 137" in deleted.stderr, deleted.stderr
    lab.ok(lab.ctr("c", "rm", cid))


def test_get_unknown_task(lab: Lab) -> None:
    cid = "notask"
    lab.ids.add(cid)
    lab.ok(lab.ctr("c", "create", "--runtime", RUNPY, lab.image.ref, cid, "true"))
    with lab.client() as client:
        tasks = tasks_stub(client)
        with pytest.raises(NotFound) as no_task:
            tasks.Get(tasks_pb2.GetRequest(container_id=cid))
        with pytest.raises(NotFound) as no_container:
            tasks.Get(tasks_pb2.GetRequest(container_id="nope"))
    assert str(no_task.value) == f"task {cid} not found"
    assert not lab.stray(), lab.stray()
    lab.ok(lab.ctr("c", "rm", cid))
    assert str(no_container.value) == f'container "nope" in namespace "{lab.ns}": not found'
