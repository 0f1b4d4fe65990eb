"""`start` (runc's `linuxContainer.exec`): open the exec fifo for reading, which lets the
blocked init write to it and exec the user's process, then run the poststart hooks."""

import os
import select

from runc_py.container import hooks
from runc_py.container.state import EXEC_FIFO, State
from runc_py.errors import RuntimeErr


def start(root: str, st: State) -> None:
    status = st.status(root)
    if status == "stopped":
        raise RuntimeErr("cannot start a container that has stopped")
    if status in ("running", "paused"):
        raise RuntimeErr("cannot start an already running container")
    if status == "creating":
        raise RuntimeErr("cannot start a container that is still being created")
    fifo = os.path.join(root, st.id, EXEC_FIFO)
    # Our non-blocking open is the reader the init's blocked open(O_WRONLY) waits for; it then
    # writes one byte. If the init dies instead, its pidfd turns readable and nothing comes.
    try:
        pidfd = os.pidfd_open(st.pid)
    except ProcessLookupError:
        raise RuntimeErr("cannot start a container that has stopped") from None
    try:
        if not st.status_alive():  # the pid was reused before we held it
            raise RuntimeErr("cannot start a container that has stopped")
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            poll = select.poll()
            poll.register(fd, select.POLLIN)
            poll.register(pidfd, select.POLLIN)
            data = b""
            while not data:
                ready = dict(poll.poll())
                if fd in ready:
                    data = os.read(fd, 1)
                    if not data and not ready.get(pidfd):
                        continue  # a writer came and went without a byte: keep waiting
                if not data and pidfd in ready:
                    raise RuntimeErr("cannot start a container that has stopped")
        finally:
            os.close(fd)
    finally:
        os.close(pidfd)
    os.unlink(fifo)
    hooks.run_warn("poststart", st.hooks.get("poststart"), st.oci_state(root, "running"))
