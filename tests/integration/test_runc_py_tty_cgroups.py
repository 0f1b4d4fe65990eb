"""runc-py as a terminal, on cgroup v2, and through `update`, `events`, `ps` and `create`'s
aftermath, next to the real runc where runc does the same thing:

- `run` / `exec -t` in the foreground with a terminal and no `--console-socket`: runc-py is the
  terminal (pty master relayed to its stdio, host terminal raw, size and SIGWINCH propagated,
  exit status passed on); with `--detach` it refuses, as runc does;
- a container under forced cgroup v2 (`STACKLAB_CGROUP_VERSION=2`, on this hybrid host the
  unified hierarchy with hugetlb only): its cgroup, pause/resume through cgroup.freeze, removal;
- `update` by flags and by `-r -` (containerd's way), `events --stats`, `ps --format json`;
- after `create` returns, the container's only runc-py process is its init.

Every container id, cgroup path and temp dir carries TOKEN, so whatever is left shows up in the
module's final check (processes, mounts, cgroups).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.runtimes import (
    Bundles,
    Runtime,
    Spec,
    chrooted,
    error_message,
    module_bundles,
    reference_binary,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
]

TOKEN = f"sltty-{uuid.uuid4().hex[:8]}"
RUNC_PY = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "runc-py")
if not os.path.exists(RUNC_PY):
    RUNC_PY = shutil.which("runc-py") or RUNC_PY
CGROUP = Path("/sys/fs/cgroup")
TTY_SCRIPT = "tty; stty size; echo ok; exit 7"
NO_TTY_DETACHED = "cannot allocate tty if runc will detach without setting console socket"


@dataclass
class Rt(Runtime):
    """A Runtime that can be given an environment and a stdin (`update -r -`)."""

    env: dict[str, str] | None = None

    def __call__(
        self, *args: str | Path, timeout: float = 30, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, "--root", str(self.root), *map(str, args)]
        # files, not pipes: a created container's init keeps runc's stdio open
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run(
                argv,
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=timeout,
                env=self.env,
            )
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(), err.read().decode()
        return subprocess.CompletedProcess(argv, p.returncode, stdout, stderr)

    def argv(self, *args: str | Path) -> list[str]:
        return [self.binary, "--root", str(self.root), *map(str, args)]

    def ok(self, *args: str | Path, stdin: bytes | None = None) -> str:
        r = self(*args, stdin=stdin)
        assert r.returncode == 0, f"{self.name} {args}: {r.stderr}"
        return r.stdout


def status(rt: Rt, cid: str) -> dict[str, Any]:
    st = rt.state(cid)
    assert st is not None, f"{rt.name}: no container {cid}"
    return st


def runc_py_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, STACKLAB_ROOT=f"/tmp/{TOKEN}-stack", **extra)
    env.pop("TRACEPARENT", None)
    if "STACKLAB_CGROUP_VERSION" not in extra:
        env.pop("STACKLAB_CGROUP_VERSION", None)
    return env


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles() -> Iterator[Bundles]:
    def tidy() -> None:
        for parent in [*CGROUP.glob(f"*/{TOKEN}"), *CGROUP.glob(f"*/*/{TOKEN}")]:
            try:
                parent.rmdir()  # runc leaves the parents of its cgroups (runc-py does not)
            except OSError:
                pass

    try:
        with module_bundles(TOKEN, tidy) as bundles:
            yield bundles
    finally:
        shutil.rmtree(f"/tmp/{TOKEN}-stack", ignore_errors=True)


def _runtime(name: str, binary: str, env: dict[str, str] | None) -> Rt:
    return Rt(name, binary, Path(tempfile.mkdtemp(prefix=f"{TOKEN}-root-")), env)


@pytest.fixture
def ours() -> Iterator[Rt]:
    rt = _runtime("runc-py", RUNC_PY, runc_py_env())
    try:
        yield rt
    finally:
        rt.cleanup()


@pytest.fixture
def ours_v2() -> Iterator[Rt]:
    rt = _runtime("runc-py", RUNC_PY, runc_py_env(STACKLAB_CGROUP_VERSION="2"))
    try:
        yield rt
    finally:
        rt.cleanup()


@pytest.fixture
def runc() -> Iterator[Rt | None]:
    """The real runc, or None where it is not installed (its comparisons are then skipped), or
    where we run chrooted: there runc 1.1's `exec` joins the mount namespace at the host's own
    root rather than the container's (runc-py takes the init's root), so nothing compares."""
    binary = reference_binary()
    if binary is None or chrooted():
        yield None
        return
    rt = _runtime("runc", binary, None)
    try:
        yield rt
    finally:
        rt.cleanup()


@pytest.fixture
def cid(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    return f"{TOKEN}-{name}"[:60]


def bundle(
    bundles: Bundles, cid: str, args: list[str], terminal: bool = False, **linux: Any
) -> Path:
    """The test image's bundle, its cgroup under /TOKEN/ in every hierarchy."""

    def edit(spec: Spec) -> None:
        spec["process"]["terminal"] = terminal
        spec["linux"]["cgroupsPath"] = f"/{TOKEN}/{cid}"
        spec["linux"].update(linux)

    return bundles.make(f"{cid}-{'tty' if terminal else 'plain'}", args, edit)


def pids_with(text: str) -> dict[int, str]:
    """pid -> command line of every live process whose command line contains `text`."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            zombie = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if text in cmd and not zombie:
            out[int(proc.name)] = cmd
    return out


# --- a pty for runc to sit on -----------------------------------------------------------------


def _become_tty_session() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # after setsid: the pty is our controlling terminal


class Pty:
    """A command on the slave side of a fresh pty (its stdio and controlling terminal), as in
    an interactive shell; we hold the master, like a terminal emulator."""

    def __init__(self, argv: list[str], env: dict[str, str] | None, rows: int, cols: int):
        self.master, slave = os.openpty()
        self.name = os.ttyname(slave)
        self.resize(rows, cols)
        self.modes = termios.tcgetattr(slave)
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                start_new_session=True,
                preexec_fn=_become_tty_session,
            )
        finally:
            os.close(slave)
        self.out = b""

    def resize(self, rows: int, cols: int) -> None:
        """What a terminal emulator does when its window changes: the kernel then sends
        SIGWINCH to the pty's foreground process group (runc's)."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def _read(self, timeout: float) -> bool:
        """One read (or none within timeout); False once no one holds the slave any more."""
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError as e:
            if e.errno == errno.EIO:
                return False
            raise
        self.out += data
        return bool(data)

    def read_until(self, want: bytes, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while want not in self.out:
            left = deadline - time.monotonic()
            assert left > 0, f"no {want!r} within {timeout}s: {self.out!r}"
            assert self._read(left), f"the pty closed before {want!r}: {self.out!r}"

    def finish(self, timeout: float = 30) -> tuple[int, list[str]]:
        """(exit status, output lines) once the command has exited and closed the pty."""
        deadline = time.monotonic() + timeout
        while self._read(0.2):
            assert time.monotonic() < deadline, f"the pty is still open: {self.out!r}"
        rc = self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        text = self.out.decode(errors="replace").replace("\r\n", "\n")
        return rc, text.splitlines()

    def restored(self) -> bool:
        """Is the terminal's mode what it was before (runc puts it back from raw)?"""
        fd = os.open(self.name, os.O_RDWR | os.O_NOCTTY)
        try:
            return termios.tcgetattr(fd) == self.modes
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def ptys() -> Iterator[list[Pty]]:
    made: list[Pty] = []
    yield made
    for p in made:
        p.close()


def on_pty(ptys: list[Pty], rt: Rt, *args: str | Path, rows: int = 33, cols: int = 91) -> Pty:
    p = Pty(rt.argv(*args), rt.env, rows, cols)
    ptys.append(p)
    return p


# --- 1. the terminal --------------------------------------------------------------------------


def test_run_with_terminal_relays_the_pty(
    bundles: Bundles, ours: Rt, runc: Rt | None, ptys: list[Pty], cid: str
) -> None:
    """`run` of a terminal bundle under a pty: the container gets its own pty of our size, its
    output comes back, its exit status is ours, the terminal is restored, nothing is left."""
    b = bundle(bundles, cid, ["sh", "-c", TTY_SCRIPT], terminal=True)
    for rt in filter(None, (ours, runc)):
        p = on_pty(ptys, rt, "run", "--bundle", b, cid)
        rc, lines = p.finish()
        # runc sizes the pty only once the process runs, so `stty size` may beat it (and see
        # 0x0); runc-py sizes it before `start`
        if rt is ours:
            assert lines[-2] == "33 91", p.out
        assert (rc, lines[-3], lines[-1]) == (7, "/dev/pts/0", "ok"), (rt.name, p.out)
        assert p.restored(), rt.name
        assert cid not in rt.ids()


def test_run_with_terminal_input_raw_mode_and_resize(
    bundles: Bundles, ours: Rt, ptys: list[Pty], cid: str
) -> None:
    """Keys reach the container through its own line discipline (ours is raw: nothing is
    echoed twice), and a new window size reaches it through SIGWINCH."""
    script = (
        'stty size; read line; echo "got:$line"; i=0; '
        'while [ "$(stty size)" = "33 91" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; '
        "stty size"
    )
    b = bundle(bundles, cid, ["sh", "-c", script], terminal=True)
    p = on_pty(ptys, ours, "run", "--bundle", b, cid)
    p.read_until(b"33 91\r\n")
    p.write(b"hello\r")
    p.read_until(b"got:hello\r\n")
    # the container's pty echoed it once; a host terminal left in cooked mode would have too
    assert p.out.count(b"hello") == 2, p.out
    p.resize(40, 120)
    rc, lines = p.finish()
    assert (rc, lines[-1]) == (0, "40 120"), p.out
    assert p.restored()


def test_run_with_terminal_killed_container(
    bundles: Bundles, ours: Rt, ptys: list[Pty], cid: str
) -> None:
    """A container killed by SIGKILL: `run` exits 128+9 and gives the terminal back."""
    b = bundle(bundles, cid, ["sh", "-c", "echo up; sleep 300"], terminal=True)
    p = on_pty(ptys, ours, "run", "--bundle", b, cid)
    p.read_until(b"up\r\n")
    ours.ok("kill", cid, "KILL")
    rc, _ = p.finish()
    assert rc == 137, p.out
    assert p.restored()
    assert cid not in ours.ids()


def test_exec_with_terminal_relays_the_pty(
    bundles: Bundles, ours: Rt, runc: Rt | None, ptys: list[Pty], cid: str
) -> None:
    b = bundle(bundles, cid, ["sleep", "300"])
    for rt in filter(None, (ours, runc)):
        rt.ok("run", "--detach", "--bundle", b, cid)
        try:
            p = on_pty(ptys, rt, "exec", "-t", cid, "sh", "-c", TTY_SCRIPT, rows=21, cols=77)
            rc, lines = p.finish()
            if rt is ours:  # runc sizes the pty only after the process started: a race
                assert lines[-2] == "21 77", p.out
            assert (rc, lines[-3], lines[-1]) == (7, "/dev/pts/0", "ok"), (rt.name, p.out)
            assert p.restored(), rt.name
            # the container runs on, and the exec left nothing of itself behind
            assert status(rt, cid)["status"] == "running"
            assert not pids_with(f"runc-py exec {cid}")
        finally:
            rt.delete(cid)


def test_terminal_with_detach_needs_a_console_socket(
    bundles: Bundles, ours: Rt, runc: Rt | None, cid: str
) -> None:
    tty_bundle = bundle(bundles, cid, ["true"], terminal=True)
    plain = bundle(bundles, cid, ["sleep", "300"])
    for rt in filter(None, (ours, runc)):
        r = rt("run", "--detach", "--bundle", tty_bundle, cid)
        assert r.returncode == 1 and error_message(r.stderr).endswith(NO_TTY_DETACHED), r.stderr
        assert cid not in rt.ids()
        rt.ok("run", "--detach", "--bundle", plain, cid)
        r = rt("exec", "--detach", "-t", cid, "true")
        # a failed exec is 255 (any other status could be the process's own)
        assert r.returncode == 255, (rt.name, r.stderr)
        assert error_message(r.stderr) == f"exec failed: {NO_TTY_DETACHED}", r.stderr
        rt.delete(cid)


def test_terminal_without_any_tty_fails_like_runc(
    bundles: Bundles, ours: Rt, runc: Rt | None, cid: str
) -> None:
    """Not even a controlling terminal to relay to: runc fails to open /dev/tty, and so do we,
    before anything is created."""
    b = bundle(bundles, cid, ["true"], terminal=True)
    for rt in filter(None, (ours, runc)):
        r = subprocess.run(
            rt.argv("run", "--bundle", b, cid),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=rt.env,
            start_new_session=True,  # no controlling terminal
            timeout=30,
        )
        assert r.returncode == 1, r.stderr
        assert error_message(r.stderr).endswith("open /dev/tty: no such device or address")
        assert cid not in rt.ids()


# --- 2. cgroup v2 -----------------------------------------------------------------------------


def test_forced_cgroup_v2_lifecycle(bundles: Bundles, ours_v2: Rt, cid: str) -> None:
    unified = CGROUP / "unified"
    if not (unified / "cgroup.controllers").exists():
        unified = CGROUP  # a pure v2 host
    hugetlb = "hugetlb" in (unified / "cgroup.controllers").read_text().split()
    limits = [{"pageSize": "2MB", "limit": 4 << 20}] if hugetlb else []
    b = bundle(bundles, cid, ["sleep", "300"], resources={"hugepageLimits": limits})
    rt = ours_v2
    parent_was_there = (unified / TOKEN).exists()  # runc makes it too on a hybrid host
    rt.ok("run", "--detach", "--bundle", b, cid)
    d = unified / TOKEN / cid
    st = rt.state(cid)
    assert st is not None and st["status"] == "running"
    pid = st["pid"]
    assert f"0::/{TOKEN}/{cid}" in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    assert pid in map(int, (d / "cgroup.procs").read_text().split())
    if hugetlb:
        assert (d / "hugetlb.2MB.max").read_text().strip() == str(4 << 20)
    # an exec'd process joins the same cgroup
    inside = rt.ok("exec", cid, "cat", "/proc/self/cgroup").splitlines()
    assert f"0::/{TOKEN}/{cid}" in inside

    rt.ok("pause", cid)
    assert status(rt, cid)["status"] == "paused"
    assert "frozen 1" in (d / "cgroup.events").read_text().splitlines()
    rt.ok("resume", cid)
    assert status(rt, cid)["status"] == "running"
    assert "frozen 0" in (d / "cgroup.events").read_text().splitlines()

    stats = json.loads(rt.ok("events", "--stats", cid))
    assert (stats["type"], stats["id"]) == ("stats", cid)
    if hugetlb:
        assert "2MB" in stats["data"]["hugetlb"]

    rt.ok("kill", cid, "KILL")
    assert (rt.wait_status(cid, "stopped") or {}).get("status") == "stopped"
    rt.ok("delete", cid)
    assert not d.exists()
    if not parent_was_there:  # runc-py made the parent too, and took it back
        assert not (unified / TOKEN).exists()
    assert cid not in rt.ids()


# --- 3. update, events, ps ----------------------------------------------------------------------

CGROUP_FILES = [
    "memory/memory.limit_in_bytes",
    "pids/pids.max",
    "cpu/cpu.shares",
    "cpu/cpu.cfs_quota_us",
    "cpu/cpu.cfs_period_us",
]


def read_limits(rt: Rt, cid: str) -> list[str]:
    """The container's limits, read from inside (its own cgroup mounted at /sys/fs/cgroup)."""
    paths = " ".join(f"/sys/fs/cgroup/{f}" for f in CGROUP_FILES)
    return rt.ok("exec", cid, "sh", "-c", f"cat {paths}").split()


def _keys(d: dict[str, Any]) -> set[str]:
    return set(d)


@pytest.mark.skipif(
    not (CGROUP / "memory").is_dir() or not (CGROUP / "pids").is_dir(),
    reason="needs cgroup v1 memory and pids hierarchies",
)
def test_update_events_ps_like_runc(bundles: Bundles, ours: Rt, runc: Rt | None, cid: str) -> None:
    b = bundle(bundles, cid, ["sleep", "300"])
    flags = ["--memory", "64m", "--pids-limit", "20", "--cpu-share", "512"]
    flags += ["--cpu-quota", "50000", "--cpu-period", "100000"]
    as_containerd = {
        "memory": {"limit": 128 << 20},
        "cpu": {"shares": 256, "quota": 20000, "period": 50000},
        "pids": {"limit": 30},
    }
    seen: dict[str, Any] = {}
    for rt in filter(None, (ours, runc)):
        rt.ok("run", "--detach", "--bundle", b, cid)
        try:
            init = status(rt, cid)["pid"]
            rt.ok("update", *flags, cid)
            after_flags = read_limits(rt, cid)
            assert after_flags == [str(64 << 20), "20", "512", "50000", "100000"], rt.name
            rt.ok("update", "-r", "-", cid, stdin=json.dumps(as_containerd).encode())
            after_json = read_limits(rt, cid)
            assert after_json == [str(128 << 20), "30", "256", "20000", "50000"], rt.name
            # runc's own template (all zeros, `runc update --help`) changes nothing
            zeros = {"memory": {"limit": 0, "reservation": 0, "swap": 0}}
            zeros["cpu"] = {"shares": 0, "quota": 0, "period": 0, "cpus": "", "mems": ""}
            rt.ok("update", "-r", "-", cid, stdin=json.dumps(zeros).encode())
            assert read_limits(rt, cid) == after_json, rt.name

            pid_file = bundles.dir / f"{cid}-{rt.name}.pid"
            rt.ok("exec", "--detach", "--pid-file", pid_file, cid, "sleep", "200")
            sleeper = int(pid_file.read_text())
            ps = rt.ok("ps", "--format", "json", cid)
            assert re.fullmatch(r"\[\d+(,\d+)*\]\n", ps), ps  # Go's compact JSON
            assert sorted(json.loads(ps)) == sorted([init, sleeper]), rt.name

            events = rt.ok("events", "--stats", cid)
            assert events.count("\n") == 1 and events.endswith("\n")
            ev = json.loads(events)
            assert (ev["type"], ev["id"]) == ("stats", cid)
            data = ev["data"]
            assert data["memory"]["usage"]["usage"] > 0
            assert data["memory"]["usage"]["limit"] == 128 << 20
            assert data["pids"]["current"] >= 2 and data["pids"]["limit"] == 30
            seen[rt.name] = data
        finally:
            rt.delete(cid)
    if runc is not None:
        ref, cand = seen["runc"], seen["runc-py"]
        assert list(cand) == list(ref)  # the same sections, in runc's order
        for section in ("cpuset", "pids"):
            assert _keys(cand[section]) == _keys(ref[section]), section
        assert _keys(cand["cpu"]["usage"]) == _keys(ref["cpu"]["usage"])
        for key in ("usage", "swap", "kernel", "kernelTCP"):
            assert {"limit", "failcnt"} <= _keys(cand["memory"][key]), key
        assert _keys(ref["memory"]) - {"cache"} == _keys(cand["memory"]) - {"cache"}
        assert (cand["intel_rdt"], cand["network_interfaces"]) == ({}, None)


def test_update_accepts_docker_spelling_and_rejects_junk(
    bundles: Bundles, ours: Rt, cid: str
) -> None:
    b = bundle(bundles, cid, ["sleep", "300"])
    ours.ok("run", "--detach", "--bundle", b, cid)
    ours.ok("update", "--cpu-shares", "700", cid)
    assert read_limits(ours, cid)[2] == "700"
    r = ours("update", "-r", "-", cid, stdin=b"[1, 2]")
    assert r.returncode == 1 and "unable to read resources" in r.stderr
    r = ours("update", "--memory", "lots", cid)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    ours.delete(cid)


# --- 4. what `create` leaves running ----------------------------------------------------------


def test_create_leaves_only_the_init(bundles: Bundles, ours: Rt, cid: str) -> None:
    b = bundle(bundles, cid, ["sleep", "300"])
    pid_file = bundles.dir / f"{cid}.pid"
    ours.ok("create", "--bundle", b, "--pid-file", pid_file, cid)
    init = int(pid_file.read_text())
    procs = pids_with(cid)
    assert procs == {init: f"runc-py init {cid}"}, procs  # no `runc-py create` left either
    assert os.listdir(f"/proc/{init}/task") == [str(init)]  # one thread
    freezer = CGROUP / "freezer" / TOKEN / cid / "cgroup.procs"
    if freezer.exists():
        assert freezer.read_text().split() == [str(init)]
    ours.ok("start", cid)
    assert (ours.wait_status(cid, "running") or {}).get("pid") == init
    assert Path(f"/proc/{init}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"300"]
    assert not pids_with(cid)  # nothing of runc-py is left once it started
    ours.ok("exec", "--detach", cid, "true")
    assert not pids_with(cid)
    ours.ok("delete", "--force", cid)
    assert not pids_with(cid)
