"""`exec` (runc's `setns_init_linux.go` and nsexec's join path): a new process inside a running
container — fork, join the init's cgroup and each of its namespaces, fork again to land in its
pid namespace, and set up the process exactly as the init's was."""

from __future__ import annotations

import os

from runc_py import cgroups
from runc_py.container import init, process, wait
from runc_py.container import namespaces as ns
from runc_py.container.create import write_pid_file
from runc_py.container.destroy import SIGKILL
from runc_py.container.state import State
from runc_py.container.sync import Channel, fork_stage
from runc_py.errors import RuntimeErr
from runc_py.linux import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


def _foreign_namespaces(st: State) -> dict[str, str | None]:
    """The init's namespaces that differ from ours (setns into our own user ns is EINVAL)."""
    out: dict[str, str | None] = {}
    for t, path in st.namespaces.items():
        try:
            theirs = os.stat(path).st_ino
        except OSError:
            raise RuntimeErr(f"container {st.id}: cannot open {path}: init has exited") from None
        if theirs != os.stat(f"/proc/self/ns/{ns.FILES[t]}").st_ino:
            out[t] = path
    return out


def execute(
    root: str,
    st: State,
    proc: dict[str, Any],
    *,
    detach: bool,
    pid_file: str | None,
    console_socket: str | None,
    preserve_fds: int,
) -> int:
    status = st.status(root)
    if status == "stopped":
        raise RuntimeErr("cannot exec in a stopped container")
    if status == "paused":
        raise RuntimeErr("cannot exec in a paused container")
    if not proc.get("args"):
        raise RuntimeErr("args must not be empty")
    if proc.get("terminal") and detach and not console_socket:
        raise RuntimeErr("cannot allocate tty if runc will detach without setting console socket")
    nss = _foreign_namespaces(st)
    console_fd = None
    relay = None
    if console_socket and proc.get("terminal"):
        from runc_py.container import console

        console_fd = console.connect(console_socket)
    elif proc.get("terminal") and not detach:
        from runc_py.container.tty import Relay

        relay = Relay()  # in the foreground with no console socket, we are the terminal
        console_fd = relay.theirs
    process.preload(proc, st.seccomp, False)
    stage1, parent = fork_stage(lambda ch: _stage1(ch, st, nss, proc, console_fd, preserve_fds))
    pid = 0
    try:
        try:
            msg = parent.expect("pid")
        finally:
            os.waitpid(stage1, 0)
        pid = int(msg["pid"])
        # the pty gets its size before the process can ask for it (`stty size` as argv)
        parent.send("go", winsize=relay.winsize().hex() if relay else None)
        parent.expect("ready")
        if relay:
            relay.attach()
    except BaseException:
        if relay:
            relay.close()
        if pid:
            try:
                os.kill(pid, SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        raise
    finally:
        parent.close()
        if console_fd is not None:
            os.close(console_fd)
    if pid_file:
        write_pid_file(pid_file, pid)
    if detach:
        return 0
    if relay:
        try:
            return relay.run(pid)
        finally:
            relay.close()
    wait.forward_signals(pid)
    return wait.wait_exit(pid)


def _stage1(
    ch: Channel,
    st: State,
    nss: dict[str, str | None],
    proc: dict[str, Any],
    console_fd: int | None,
    preserve_fds: int,
) -> NoReturn:
    try:
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        if st.cgroup:
            cgroups.from_state(st.cgroup).enter()  # before setns(mnt) hides the host's cgroupfs
        # setns(mnt) leaves us at the namespace's root mount, which is the container's rootfs
        # only if the init's pivot_root replaced it: not when runc-py ran chrooted (pivot_root
        # then moves the chroot, and the host's / stays the namespace's root). The init's own
        # root is right in both cases.
        root = os.open(f"/proc/{st.pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        init.join_namespaces(nss, None, maps=False)
        os.fchdir(root)
        os.chroot(".")
        os.chdir("/")
        os.close(root)
        pid = os.fork()
        if pid == 0:
            _stage2(ch, st, proc, console_fd, preserve_fds)
        ch.send("pid", pid=pid)
        os._exit(0)
    except BaseException as e:
        init.fail(ch, e)


def _stage2(
    ch: Channel, st: State, proc: dict[str, Any], console_fd: int | None, preserve_fds: int
) -> NoReturn:
    try:
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        libc.set_process_title(f"runc-py exec {st.id}")
        go = ch.expect("go")
        os.setsid()
        if console_fd is not None:
            from runc_py.container import console

            master, slave = console.open_pty()
            if go.get("winsize"):
                console.set_winsize(master, bytes.fromhex(go["winsize"]))
            console.send_master(console_fd, master, slave)
            os.close(master)
            console.become_tty(slave, mount_console=False)
        path, args, env = process.finalize(proc, st.seccomp)
        ch.send("ready")
        ch.close()
        process.exec_process(
            path, args, env, st.seccomp, bool(proc.get("noNewPrivileges")), preserve_fds
        )
    except BaseException as e:
        init.fail(ch, e)
    os._exit(127)
