"""`start` (runc's `linuxContainer.exec`): open the exec fifo for reading, which lets the
blocked init write to it and exec the user's process, then run the poststart hooks."""

import os
import signal
from types import FrameType

from runc_py.container import hooks
from runc_py.container.state import EXEC_FIFO, State
from runc_py.errors import RuntimeErr


class _InitGone(Exception):
    pass


def start(root: str, st: State) -> None:
    status = st.status(root)
    if status == "stopped":
        raise RuntimeErr("cannot start a container that has stopped")
    if status in ("running", "paused"):
        raise RuntimeErr("cannot start an already running container")
    if status == "creating":
        raise RuntimeErr("cannot start a container that is still being created")
    fifo = os.path.join(root, st.id, EXEC_FIFO)

    # open(O_RDONLY) blocks until the init opens the other end; if the init dies first it
    # never will, so check it on a timer and give up then (runc races a goroutine the same way).
    def check(_sig: int, _frame: FrameType | None) -> None:
        if st.status(root) == "stopped":
            raise _InitGone

    old = signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, 0.1, 0.1)
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_CLOEXEC)
    except _InitGone:
        raise RuntimeErr("cannot start a container that has stopped") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    try:
        data = os.read(fd, 1)
    finally:
        os.close(fd)
    if not data:
        raise RuntimeErr("cannot start an already running container")
    os.unlink(fifo)
    hooks.run_warn("poststart", st.hooks.get("poststart"), st.oci_state(root, "running"))
