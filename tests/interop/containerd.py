"""A real containerd of the test's own: temp root, state, socket and config, the busybox test
image imported, and a teardown that leaves no process, mount, cgroup or socket behind.

`start_containerd()` is the context manager; `conftest.py` wraps it in fixtures. Everything lives
in one temp dir except what containerd 1.6 cannot move: the shims' sockets in /run/containerd/s
(removed here by name) and the cgroups ctr names `/<namespace>/<id>` (removed here by namespace).
The runtime's state root is moved into the temp dir with ctr's `--runc-root`, and the I/O fifos
with `--fifo-dir`, so a system containerd using /run/containerd and /var/lib/containerd is
never touched.
"""

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stacklab import testimage

CGROUP_FS = Path("/sys/fs/cgroup")
SHIM_SOCKET_DIR = Path("/run/containerd/s")  # containerd 1.6's runc-v2 shim: not configurable
RUNC_V2 = "io.containerd.runc.v2"
TOOLS = ("containerd", "ctr", "containerd-shim-runc-v2")


def _runc_py() -> str:
    beside = Path(sys.executable).parent / "runc-py"  # the venv's, not resolved: python is a link
    return str(beside) if beside.exists() else shutil.which("runc-py") or str(beside)


RUNC_PY = _runc_py()

CONFIG = """\
version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[debug]
  level = "debug"
"""


def containerd_env() -> dict[str, str]:
    """containerd's environment: ours, with the venv's bin first on PATH, where containerd finds
    our shim (`containerd-shim-runpy-v2` for runtime io.containerd.runpy.v2)."""
    venv_bin = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}")


def missing() -> str | None:
    """Why a real containerd cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root: containerd mounts snapshots and makes cgroups"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package `containerd`)"
    return None


@dataclass
class Containerd:
    dir: Path
    namespace: str
    image: str
    proc: "subprocess.Popen[bytes]"
    ids: set[str] = field(default_factory=set)  # every container id used, for the cleanup

    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def runc_root(self) -> Path:
        """What the shim passes to the runtime as `--root`: `--runc-root` plus the namespace."""
        return self.dir / "runc" / self.namespace

    @property
    def bundles(self) -> Path:
        return self.state / "io.containerd.runtime.v2.task" / self.namespace

    def command(self, *args: str) -> list[str]:
        return ["ctr", "-a", str(self.socket), "-n", self.namespace, *args]

    def ctr(
        self, *args: str, input: str | None = None, timeout: float = 30
    ) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            self.command(*args),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run_args(
        self, cid: str, *cmd: str, flags: Sequence[str] = ("--rm",), runc: str = RUNC_PY
    ) -> list[str]:
        """`ctr run` arguments: the real runc-v2 shim driving `runc` (runc-py by default)."""
        self.ids.add(cid)
        return [
            "run", "--runtime", RUNC_V2, "--runc-binary", runc,
            "--runc-root", str(self.dir / "runc"), "--fifo-dir", str(self.dir / "fifo"),
            *flags, self.image, cid, *cmd,
        ]  # fmt: skip

    def run(
        self,
        cid: str,
        *cmd: str,
        flags: Sequence[str] = ("--rm",),
        runc: str = RUNC_PY,
        timeout: float = 30,
    ) -> "subprocess.CompletedProcess[str]":
        return self.ctr(*self.run_args(cid, *cmd, flags=flags, runc=runc), timeout=timeout)

    def exec_args(self, cid: str, exec_id: str, *cmd: str, flags: Sequence[str] = ()) -> list[str]:
        return [
            "task", "exec", "--fifo-dir", str(self.dir / "fifo"), "--exec-id", exec_id,
            *flags, cid, *cmd,
        ]  # fmt: skip

    def task_rows(self) -> dict[str, tuple[int, str]]:
        """`ctr task ls` as {id: (pid, status)}."""
        out = self.ctr("task", "ls").stdout.splitlines()[1:]
        return {f[0]: (int(f[1]), f[2]) for f in (line.split() for line in out) if len(f) >= 3}

    def tasks(self) -> dict[str, str]:
        """`ctr task ls` as {id: status}."""
        return {cid: status for cid, (_, status) in self.task_rows().items()}

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> str | None:
        deadline = time.monotonic() + timeout
        while (now := self.tasks().get(cid)) != status and time.monotonic() < deadline:
            time.sleep(0.05)
        return now

    def log_tail(self, lines: int = 40) -> str:
        path = self.dir / "containerd.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def restart(self, timeout: float = 20) -> None:
        """SIGKILL containerd and start it again on the same config: its shims live on."""
        self.proc.kill()
        self.proc.wait(10)
        self.proc = _spawn(self.dir / "config.toml", self.dir / "containerd.log")
        _wait_ready(self, timeout)

    # -- leftovers and cleanup ---------------------------------------------------------------

    def _ns_cgroups(self) -> list[Path]:
        """Every cgroup under `/<namespace>` in every hierarchy, deepest first."""
        found: list[Path] = []
        for hierarchy in CGROUP_FS.iterdir() if CGROUP_FS.is_dir() else []:
            top = hierarchy / self.namespace
            if top.is_dir():
                found += [Path(d) for d, _, _ in os.walk(top)]
        return sorted(found, key=lambda p: len(p.parts), reverse=True)

    def _processes(self) -> set[int]:
        """Shims, runtimes and inits that name our dir, and whatever is in our cgroups."""
        pids: set[int] = set()
        needle = f"{self.dir}/".encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if needle in (entry / "cmdline").read_bytes():
                        pids.add(int(entry.name))
        for cg in self._ns_cgroups():
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (cg / "cgroup.procs").read_text().split())
        return pids

    def _mounts(self) -> list[str]:
        """Mount points of mounts that name our dir (the point or, for overlay, the layers)."""
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if f"{self.dir}/" in line:
                points.append(line.split()[4].replace("\\040", " "))
        return points

    def shim_sockets(self) -> list[Path]:
        """The shim sockets of our ids still on disk: /run/containerd/s/sha256(address/ns/id)."""
        out = []
        for cid in self.ids:
            key = f"{self.socket}/{self.namespace}/{cid}".encode()
            path = SHIM_SOCKET_DIR / hashlib.sha256(key).hexdigest()
            if path.exists():
                out.append(path)
        return out

    def leftovers(self) -> list[str]:
        """What a finished test left behind, in words; [] when clean. Shims exit a moment after
        `ctr task rm`, so this waits a little for that before it reports."""
        deadline = time.monotonic() + 5
        while True:
            found = []
            if tasks := self.tasks():
                found.append(f"tasks: {tasks}")
            if containers := self.ctr("containers", "ls", "-q").stdout.split():
                found.append(f"containers: {containers}")
            for what, d in (("runtime state", self.runc_root), ("bundles", self.bundles)):
                if d.is_dir() and (names := sorted(os.listdir(d))):
                    found.append(f"{what} in {d}: {names}")
            if mounts := self._mounts():
                found.append(f"mounts: {mounts}")
            if cgroups := [str(c) for c in self._ns_cgroups() if c.name != self.namespace]:
                found.append(f"cgroups: {cgroups}")
            shims = [p for p in self._processes() if b"containerd-shim" in _cmdline(p)]
            if shims:
                found.append(f"shims: {shims}")
            if sockets := self.shim_sockets():
                found.append(f"shim sockets: {sockets}")
            if not found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def reset(self) -> None:
        """Kill and remove every task and container, as a test that failed half-way needs."""
        tasks = self.tasks()
        for cid, status in tasks.items():
            if status == "PAUSED":
                self.ctr("task", "resume", cid)
            self.ctr("task", "kill", "-a", "-s", "KILL", cid)
        for cid in tasks:
            self.ctr("task", "rm", "-f", cid)
        for cid in self.ctr("containers", "ls", "-q").stdout.split():
            self.ids.add(cid)
            self.ctr("containers", "rm", cid)

    def stop(self) -> None:
        """Stop containerd, then take away whatever it or its shims left: processes, mounts,
        cgroups, shim sockets and the temp dir."""
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.reset()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.bundles.is_dir():
            self.ids.update(os.listdir(self.bundles))
        for cg in self._ns_cgroups():  # a frozen task cannot die
            with contextlib.suppress(OSError):
                if (cg / "freezer.state").exists():
                    (cg / "freezer.state").write_text("THAWED")
        deadline = time.monotonic() + 10
        while (pids := self._processes()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for point in sorted(self._mounts(), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        for cg in self._ns_cgroups():
            for _ in range(50):
                try:
                    cg.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
        for sock in self.shim_sockets():
            sock.unlink(missing_ok=True)
        if not self._mounts():
            shutil.rmtree(self.dir, ignore_errors=True)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _wait_ready(cd: Containerd, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cd.proc.poll() is not None:
            raise RuntimeError(f"containerd exited {cd.proc.returncode}:\n{cd.log_tail()}")
        if cd.socket.exists() and cd.ctr("version", timeout=5).returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"containerd did not answer on {cd.socket} in {timeout}s:\n{cd.log_tail()}")


def _spawn(config: Path, log: Path) -> "subprocess.Popen[bytes]":
    with open(log, "ab") as logf:
        return subprocess.Popen(
            ["containerd", "--config", str(config)],
            env=containerd_env(),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def start_containerd(
    namespace: str | None = None, extra_config: str = "", timeout: float = 20
) -> Iterator[Containerd]:
    """A running containerd on a temp dir with the busybox image imported into `namespace`
    (default `stacklab-test-<pid>`: ctr's cgroups `/<ns>/<id>` are host-wide, so concurrent
    runs must not share one). `extra_config` is appended to the config.toml."""
    tmp = Path(tempfile.mkdtemp(prefix="stacklab-containerd-"))
    (tmp / "fifo").mkdir()
    config = tmp / "config.toml"
    config.write_text(CONFIG.format(dir=tmp) + extra_config)
    proc = _spawn(config, tmp / "containerd.log")
    image = testimage.build_image_layout(tmp / "layout")
    cd = Containerd(tmp, namespace or f"stacklab-test-{os.getpid()}", image.ref, proc)
    try:
        archive = tmp / "busybox.oci.tar"
        testimage.write_oci_archive(image.layout, archive)
        _wait_ready(cd, timeout)
        imported = cd.ctr("images", "import", str(archive), timeout=60)
        if imported.returncode != 0:
            raise RuntimeError(f"ctr images import failed: {imported.stderr}")
        yield cd
    finally:
        cd.stop()
