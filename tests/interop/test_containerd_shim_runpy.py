"""Real containerd 1.6 runs our shim, `containerd-shim-runpy-v2`, as runtime
io.containerd.runpy.v2 (it finds the binary on its PATH: the fixture puts the venv's bin first),
with runc-py underneath."""

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from containerd import Containerd
from test_containerd_runc_py import run_in_pty

pytestmark = [pytest.mark.interop, pytest.mark.root]

RUNPY_V2 = "io.containerd.runpy.v2"
RUNC_STATE = Path("/run/containerd/runc")  # the shim's runtime root without STACKLAB_ROOT


def run_args(cd: Containerd, cid: str, *cmd: str, flags: Sequence[str] = ("--rm",)) -> list[str]:
    cd.ids.add(cid)
    return [
        "run", "--runtime", RUNPY_V2, "--fifo-dir", str(cd.dir / "fifo"),
        *flags, cd.image, cid, *cmd,
    ]  # fmt: skip


@pytest.fixture
def cd(containerd: Containerd) -> Iterator[Containerd]:
    """The session's containerd; afterwards also no runtime state left in our shim's root."""
    yield containerd
    containerd.leftovers()  # waits for the shims to go, and for the `delete` containerd runs
    state = RUNC_STATE / containerd.namespace
    left = sorted(os.listdir(state)) if state.is_dir() else []
    shutil.rmtree(state, ignore_errors=True)
    assert not left, f"runtime state left in {state}: {left}"


def test_echo_hello(cd: Containerd) -> None:
    proc = cd.ctr(*run_args(cd, "runpy-hello", "echo", "hello"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hello\n", "")


def test_exit_status_propagates(cd: Containerd) -> None:
    proc = cd.ctr(*run_args(cd, "runpy-exit3", "sh", "-c", "echo out; echo err >&2; exit 3"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")


def test_detached_kill_delete(cd: Containerd) -> None:
    cid = "runpy-detached"
    proc = cd.ctr(*run_args(cd, cid, "sleep", "1000", flags=("-d",)))
    assert proc.returncode == 0, proc.stderr
    assert cd.wait_status(cid, "RUNNING") == "RUNNING", cd.log_tail()
    pid, _ = cd.task_rows()[cid]

    shim = parent(pid)
    assert b"containerd-shim-runpy-v2" in Path(f"/proc/{shim}/cmdline").read_bytes()
    assert parent(shim) != cd.proc.pid, "the shim must not be containerd's child"
    assert parent(shim) == 1 or is_subreaper(parent(shim))

    ps = cd.ctr("task", "ps", cid)
    assert ps.returncode == 0 and str(pid) in ps.stdout.split(), ps.stdout + ps.stderr

    assert cd.ctr("task", "kill", "-s", "KILL", cid).returncode == 0
    assert cd.wait_status(cid, "STOPPED") == "STOPPED", cd.log_tail()
    assert cd.ctr("task", "rm", cid).returncode == 0
    assert cd.ctr("containers", "rm", cid).returncode == 0
    deadline = time.monotonic() + 5
    while Path(f"/proc/{shim}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{shim}").exists(), "the shim did not exit after the task's delete"


def test_exec(cd: Containerd) -> None:
    cid = "runpy-exec"
    assert cd.ctr(*run_args(cd, cid, "sleep", "1000", flags=("-d",))).returncode == 0
    try:
        out = cd.ctr(*cd.exec_args(cid, "e1", "sh", "-c", "echo in-exec; exit 5"))
        assert (out.returncode, out.stdout) == (5, "in-exec\n"), out.stderr
    finally:
        cd.ctr("task", "kill", "-s", "KILL", cid)
        cd.wait_status(cid, "STOPPED")
        cd.ctr("task", "rm", cid)
        cd.ctr("containers", "rm", cid)


def alive(pid: int, name: bytes) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(name)
    except OSError:
        return False


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def is_subreaper(pid: int) -> bool:
    """Whether `pid` is not containerd but something that adopts orphans (e.g. systemd --user)."""
    return pid != 0 and "containerd" not in Path(f"/proc/{pid}/comm").read_text()


def test_pause_resume(cd: Containerd) -> None:
    cid = "runpy-pause"
    assert cd.ctr(*run_args(cd, cid, "sleep", "1000", flags=("-d",))).returncode == 0
    try:
        assert cd.ctr("task", "pause", cid).returncode == 0
        assert cd.wait_status(cid, "PAUSED") == "PAUSED"
        assert cd.ctr("task", "resume", cid).returncode == 0
        assert cd.wait_status(cid, "RUNNING") == "RUNNING"
    finally:
        cd.ctr("task", "kill", "-s", "KILL", cid)
        cd.wait_status(cid, "STOPPED")
        cd.ctr("task", "rm", cid)
        cd.ctr("containers", "rm", cid)


def test_shim_killed(cd: Containerd) -> None:
    """SIGKILL the shim: containerd runs our `delete` to clean up, and the task is gone."""
    cid = "runpy-shim-killed"
    assert cd.ctr(*run_args(cd, cid, "sleep", "1000", flags=("-d",))).returncode == 0
    assert cd.wait_status(cid, "RUNNING") == "RUNNING"
    pid, _ = cd.task_rows()[cid]
    os.kill(parent(pid), 9)
    deadline = time.monotonic() + 10
    while cid in cd.tasks() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cid not in cd.tasks(), cd.log_tail()
    # containerd forgets the task first, then runs `containerd-shim-runpy-v2 delete`, which
    # force-deletes the container: its init goes too.
    while alive(pid, b"sleep") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid, b"sleep"), "the container outlived its shim's `delete`"
    assert cd.ctr("containers", "rm", cid).returncode == 0


# pid 1 ignores signals it has no handler for: this one exits 7 on SIGTERM.
TRAP_TERM = "trap 'exit 7' TERM; while :; do sleep 0.1; done"


def test_containerd_restart(cd: Containerd) -> None:
    """SIGKILL containerd while our shims hold three tasks: they keep running, every shim is
    a child of init (or a subreaper), never of containerd, and each container's pid 1 is its
    shim's child; the new containerd reconnects through each bundle's `address` file, finds
    them RUNNING under the same shims, and can kill them; exit statuses come through."""
    cds = ("runpy-restart-a", "runpy-restart-b", "runpy-restart-c")
    assert cd.ctr(*run_args(cd, cds[0], "sleep", "1000", flags=("-d",))).returncode == 0
    assert cd.ctr(*run_args(cd, cds[1], "sh", "-c", TRAP_TERM, flags=("-d",))).returncode == 0
    assert cd.ctr(*run_args(cd, cds[2], "sleep", "1000", flags=("-d",))).returncode == 0
    try:
        rows = cd.task_rows()
        shims = {cid: parent(rows[cid][0]) for cid in cds}
        assert len(set(shims.values())) == 3  # one shim per container
        old = cd.proc.pid
        cd.restart()
        tree = subprocess.run(["pstree", "-p"], capture_output=True, text=True).stdout
        for cid, shim in shims.items():
            assert Path(f"/proc/{shim}/comm").read_text().strip() == "containerd-shim", cid
            assert parent(shim) not in (old, cd.proc.pid), (cid, tree)
            assert parent(shim) == 1 or is_subreaper(parent(shim)), (cid, tree)
            assert parent(rows[cid][0]) == shim, (cid, tree)  # pid 1 of the container
        assert cd.tasks() == dict.fromkeys(cds, "RUNNING")
        assert {cid: parent(cd.task_rows()[cid][0]) for cid in cds} == shims
        assert cd.ctr("task", "kill", "-s", "KILL", cds[0]).returncode == 0
        assert cd.ctr("task", "kill", "-s", "TERM", cds[1]).returncode == 0
        assert cd.wait_status(cds[0], "STOPPED") == "STOPPED"
        assert cd.wait_status(cds[1], "STOPPED") == "STOPPED"
        assert "137" in cd.ctr("task", "rm", cds[0]).stderr
        assert "code 7" in cd.ctr("task", "rm", cds[1]).stderr
        assert cd.ctr("task", "rm", "-f", cds[2]).returncode == 0
    finally:
        cd.reset()


def test_tty(cd: Containerd) -> None:
    argv = cd.command(*run_args(cd, "runpy-tty", "sh", "-c", "tty; echo ok", flags=("-t", "--rm")))
    rc, out = run_in_pty(argv)
    assert rc == 0, out
    assert "/dev/pts/0\nok\n" in out, repr(out)


def test_exec_tty(cd: Containerd) -> None:
    cid = "runpy-exec-tty"
    assert cd.ctr(*run_args(cd, cid, "sleep", "1000", flags=("-d",))).returncode == 0
    try:
        rc, out = run_in_pty(
            cd.command(*cd.exec_args(cid, "t1", "sh", "-c", "tty; exit 4", flags=["-t"]))
        )
        assert rc == 4, out
        assert re.search(r"/dev/pts/\d+\n", out), repr(out)
    finally:
        cd.reset()


def test_real_runc_through_runtime_config_path(cd: Containerd, tmp_path: Path) -> None:
    """`ctr run --runtime-config-path FILE`: our shim drives the runtime FILE names."""
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("the real runc is not installed (Debian package `runc`)")
    calls, wrapper = tmp_path / "calls", tmp_path / "runc-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {runc} "$@"\n')
    wrapper.chmod(0o755)
    config = tmp_path / "runtime.toml"
    config.write_text(f'BinaryName = "{wrapper}"\n')
    argv = run_args(cd, "runpy-real-runc", "sh", "-c", "echo hi; exit 2")
    argv.insert(1 + argv.index("--runtime") + 1, f"--runtime-config-path={config}")
    proc = cd.ctr(*argv)
    assert (proc.returncode, proc.stdout) == (2, "hi\n"), proc.stderr
    verbs = [line.split()[6] for line in calls.read_text().splitlines()]  # after --root, --log...
    assert verbs[:2] == ["create", "start"], verbs


def test_stdin(cd: Containerd) -> None:
    argv = run_args(cd, "runpy-stdin", "sh", "-c", "cat; echo done")
    proc = cd.ctr(*argv, input="hello\n")
    assert (proc.returncode, proc.stdout) == (0, "hello\ndone\n"), proc.stderr


def test_metrics(cd: Containerd) -> None:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        pytest.skip("cgroup v2 host: our shim's Stats answers cgroup v1 metrics only")
    cid = "runpy-metrics"
    assert cd.ctr(*run_args(cd, cid, "sleep", "1000", flags=("-d",))).returncode == 0
    try:
        out = cd.ctr("task", "metrics", cid)
        assert out.returncode == 0, out.stderr
        values = dict(line.split(None, 1) for line in out.stdout.splitlines()[2:] if line.strip())
        assert int(values["pids.current"]) == 1, out.stdout
        assert int(values["memory.usage_in_bytes"]) > 0, out.stdout
    finally:
        cd.reset()


def test_oom_event(cd: Containerd) -> None:
    """A container over its memory limit meets the OOM killer, and the shim says so:
    `ctr events` shows /tasks/oom for it (cgroup v1 hosts)."""
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        pytest.skip("cgroup v2 host: our shim watches for OOM on cgroup v1 only")
    cid = "runpy-oom"
    events = subprocess.Popen(
        cd.command("events"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        hog = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"
        flags = ("--rm", "--memory-limit", str(16 << 20))
        proc = cd.ctr(*run_args(cd, cid, "sh", "-c", hog, flags=flags), timeout=60)
        assert "survived" not in proc.stdout
        time.sleep(0.5)  # events reach `ctr events` through containerd
    finally:
        events.terminate()
        out = events.communicate(timeout=10)[0]
    oom = [line for line in out.splitlines() if "/tasks/oom" in line]
    assert oom and cid in oom[0], out
