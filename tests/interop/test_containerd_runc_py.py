"""The real containerd and its real runc-v2 shim drive runc-py (`ctr run --runc-binary`)."""

import fcntl
import os
import re
import select
import shutil
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from containerd import RUNC_PY, Containerd

pytestmark = [pytest.mark.interop, pytest.mark.root]

# What a container sees of itself; the same under runc and runc-py but for the container id.
VIEW = (
    "id; hostname; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status;"
    " stat -c '%n %A %u:%g %t:%T' /dev/* /dev/pts/ptmx; sed 's/lowerdir=[^ ]*//' /proc/mounts;"
    " cat /proc/self/cgroup; ulimit -a; env; cat /proc/self/oom_score_adj; pwd; umask"
)


def test_echo_hello(containerd: Containerd) -> None:
    proc = containerd.run("echo-hello", "echo", "hello")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hello\n", "")


def test_same_view_as_runc(containerd: Containerd) -> None:
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("the real runc is not installed (Debian package `runc`)")
    ours = containerd.run("view-runc-py", "sh", "-c", VIEW)
    theirs = containerd.run("view-runc", "sh", "-c", VIEW, runc=runc)
    assert ours.returncode == theirs.returncode == 0, ours.stderr + theirs.stderr
    assert ours.stdout.splitlines()[0] == "uid=0(root) gid=0(root) groups=0(root)"
    assert same_view(ours.stdout, "view-runc-py") == same_view(theirs.stdout, "view-runc")


def same_view(out: str, cid: str) -> str:
    """The view with the id replaced, and without the cgroup2 line: on a hybrid host runc
    also joins the (controller-less) cgroup2 hierarchy, runc-py deliberately does not (see
    runc_py/cgroups/v1.py)."""
    lines = out.replace(cid, "ID").splitlines()
    return "\n".join(line for line in lines if not line.startswith("0::"))


def test_shim_passes_root_and_log(containerd: Containerd, tmp_path: Path) -> None:
    """The runc-v2 shim calls the runtime with `--root <--runc-root>/<namespace>` (by default
    /run/containerd/runc/<ns>, whatever containerd's state dir) and a JSON log in the bundle:
    the leftover checks look there."""
    calls, wrapper = tmp_path / "calls", tmp_path / "runc-py-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {RUNC_PY} "$@"\n')
    wrapper.chmod(0o755)
    proc = containerd.run("argv", "true", runc=str(wrapper))
    assert proc.returncode == 0, proc.stderr
    log = containerd.bundles / "argv" / "log.json"
    prefix = f"--root {containerd.runc_root} --log {log} --log-format json "
    verbs = [line.removeprefix(prefix).split()[0] for line in calls.read_text().splitlines()]
    assert verbs[:3] == ["create", "start", "delete"], calls.read_text()
    assert all(line.startswith(prefix) for line in calls.read_text().splitlines())


def test_exit_status_propagates(containerd: Containerd) -> None:
    proc = containerd.run("exit-3", "sh", "-c", "exit 3")
    assert proc.returncode == 3, proc.stderr


def test_detached_task_lifecycle(containerd: Containerd) -> None:
    cd, cid = containerd, "lifecycle"
    started = cd.run(cid, "sleep", "300", flags=["-d"])
    assert started.returncode == 0, started.stderr
    assert cd.tasks()[cid] == "RUNNING"

    ex = cd.ctr(*cd.exec_args(cid, "e1", "sh", "-c", "echo from-exec; id -u"))
    assert (ex.returncode, ex.stdout) == (0, "from-exec\n0\n"), ex.stderr
    ex = cd.ctr(*cd.exec_args(cid, "e2", "sh", "-c", "exit 5"))
    assert ex.returncode == 5, ex.stderr
    ex = cd.ctr(*cd.exec_args(cid, "e3", "sleep", "300", flags=["-d"]))
    assert ex.returncode == 0, ex.stderr

    ps = cd.ctr("task", "ps", cid)
    assert ps.returncode == 0, ps.stderr
    pids = [int(line.split()[0]) for line in ps.stdout.splitlines()[1:]]
    assert cd.task_rows()[cid][0] in pids and len(pids) == 2, ps.stdout  # init and sleep e3

    assert cd.ctr("task", "pause", cid).returncode == 0
    assert cd.tasks()[cid] == "PAUSED"
    assert cd.ctr("task", "resume", cid).returncode == 0
    assert cd.tasks()[cid] == "RUNNING"

    metrics = cd.ctr("task", "metrics", cid)
    assert metrics.returncode == 0, metrics.stderr
    usage = re.search(r"^memory\.usage(?:_in_bytes)?\s+(\d+)", metrics.stdout, re.M)
    assert usage and int(usage[1]) > 0, metrics.stdout

    assert cd.ctr("task", "kill", "-s", "KILL", cid).returncode == 0
    assert cd.wait_status(cid, "STOPPED") == "STOPPED"
    rm = cd.ctr("task", "rm", cid)
    assert rm.returncode == 0, rm.stderr
    rm = cd.ctr("containers", "rm", cid)
    assert rm.returncode == 0, rm.stderr


def run_in_pty(argv: list[str], timeout: float = 30) -> tuple[int, str]:
    """Run `argv` with a pty (24x80) as its stdin, stdout and stderr; its exit status and
    everything it wrote, without carriage returns."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    try:
        proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
    finally:
        os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every end of the slave is closed
                    break
                if not chunk:
                    break
                out += chunk
        else:
            proc.kill()
        # two ptys (the container's and ours) each turn \n into \r\n
        return proc.wait(10), out.decode(errors="replace").replace("\r", "")
    finally:
        os.close(master)


def test_tty(containerd: Containerd) -> None:
    cd = containerd
    rc, out = run_in_pty(
        cd.command(*cd.run_args("tty", "sh", "-c", "tty; echo ok", flags=["-t", "--rm"]))
    )
    assert rc == 0, out
    assert "/dev/pts/0\nok\n" in out, repr(out)


def test_exec_tty(containerd: Containerd) -> None:
    cd, cid = containerd, "exec-tty"
    assert cd.run(cid, "sleep", "300", flags=["-d"]).returncode == 0
    try:
        rc, out = run_in_pty(
            cd.command(*cd.exec_args(cid, "t1", "sh", "-c", "tty; echo ok", flags=["-t"]))
        )
        assert rc == 0, out
        assert re.search(r"/dev/pts/\d+\nok\n", out), repr(out)
    finally:
        cd.ctr("task", "kill", "-s", "KILL", cid)
        cd.wait_status(cid, "STOPPED")
        cd.ctr("task", "rm", cid)
        cd.ctr("containers", "rm", cid)
