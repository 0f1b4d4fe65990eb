"""The shim's reaper: it is the subreaper of its container, so every process there ends up its
child, and this collects each exit (pid, status, time) as containerd's `sys/reaper` package
(reaper_unix.go, with `SetSubreaper`) does for containerd-shim-runc-v2.

All waiting goes through here: a SIGCHLD handler reaps with `waitpid(-1, WNOHANG)`, so the
runtime commands the shim runs are waited for with `wait(pid)` rather than `Popen.wait`, which
would race the handler for the same exit.
"""

import ctypes
import os
import signal
import subprocess
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
PR_SET_NAME = 15
KEEP_MAX, KEEP_SECONDS = 64, 60  # exits kept for a `wait` or `peek` that may still come


class Exit:
    __slots__ = ("pid", "status", "time_ns")

    def __init__(self, pid: int, status: int, time_ns: int) -> None:
        self.pid = pid
        self.status = status  # like a shell's $?: the exit code, or 128 + the signal
        self.time_ns = time_ns  # wall clock, for exited_at


def set_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER, 1): orphans in our subtree are re-parented to us."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def set_name(name: str) -> None:
    """prctl(PR_SET_NAME): the process name `ps` and `pstree` show (15 bytes at most)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def exit_code(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.waitstatus_to_exitcode(wait_status)


class Reaper:
    """Every exit of a child of the shim, kept until taken, and callbacks on each exit."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._exits: dict[int, Exit] = {}
        self._subscribers: list[threading.Thread] = []
        self.on_exit: list[object] = []  # callables(Exit), run in the reaper's notify thread
        self._pending: list[Exit] = []
        self._notify = threading.Thread(target=self._run_callbacks, name="reaper", daemon=True)

    def install(self) -> None:
        """Reap on every SIGCHLD. Python runs signal handlers in the main thread only, and only
        between bytecodes, while the kernel may deliver SIGCHLD to any thread; so the handler is
        a no-op and the C-level wakeup fd, written in whichever thread the signal lands, wakes a
        thread of ours that reaps."""
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda _sig, _frame: None)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._notify.start()
        threading.Thread(target=self._reap_loop, args=(r,), name="reaper-wait", daemon=True).start()

    def _reap_loop(self, wakeup: int) -> None:
        import select

        while True:
            self.reap()
            select.select([wakeup], [], [], 1.0)  # and every second, in case a wakeup was lost
            try:
                while os.read(wakeup, 512):
                    pass
            except BlockingIOError:
                pass

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            exit = Exit(pid, exit_code(status), time.time_ns())
            with self._cond:
                if len(self._exits) >= KEEP_MAX:
                    self._prune(exit.time_ns)
                self._exits[pid] = exit
                self._pending.append(exit)
                self._cond.notify_all()

    def _run_callbacks(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                batch, self._pending = self._pending, []
            for exit in batch:
                for callback in list(self.on_exit):
                    callback(exit)  # type: ignore[operator]

    def _prune(self, now_ns: int) -> None:
        """Forget exits nobody asked for within KEEP_SECONDS (orphans re-parented to us, and
        the processes the service has recorded already)."""
        limit = now_ns - KEEP_SECONDS * 1_000_000_000
        for pid in [p for p, e in self._exits.items() if e.time_ns < limit]:
            del self._exits[pid]

    def wait(self, pid: int, timeout: float | None = None) -> Exit | None:
        """The exit of child `pid` (taken: a later wait for a reused pid sees the new one)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while pid not in self._exits:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left if left is not None else 1.0)
                if not self._notify.is_alive():
                    self.reap()  # not installed (e.g. the `delete` subcommand): poll
            return self._exits.pop(pid)

    def peek(self, pid: int) -> Exit | None:
        with self._cond:
            return self._exits.get(pid)


def wait_child(proc: "subprocess.Popen[bytes]", reaper: Reaper | None) -> int:
    """The exit status of `proc`, through `reaper` when the shim has one."""
    if reaper is None:
        return proc.wait()
    exit = reaper.wait(proc.pid)
    assert exit is not None
    proc.returncode = exit.status  # so that Popen never waits for it itself
    return exit.status
