"""Staying with a container in the foreground (`runc run` and `runc exec` without --detach):
runc-py is the subreaper of the process, forwards the signals it gets, and exits with the
process's status (128+N if a signal killed it), as runc does."""

# `signal` is this C module plus enum wrappers, and the wrappers' `enum` costs 3-4 ms of every
# start of `runc-py run`.
import _signal as signal  # type: ignore[import-not-found]
import os

FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)


def forward_signals(pid: int) -> None:
    def handler(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for s in FORWARDED:
        signal.signal(s, handler)


def wait_exit(pid: int) -> int:
    """Reap children until `pid` exits (others reparented to us are reaped on the way)."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        if got == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)
