"""The pipe pair between `runc-py create` and the init it forks (runc's `_LIBCONTAINER_INITPIPE`
and its sync messages: procReady, procHooks, …), one JSON object per line."""

from __future__ import annotations

import os

from runc_py.errors import RuntimeErr
from runc_py.linux import libc
from stacklab import jsonfast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Channel:
    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self._buf = b""

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        """(parent end, child end)."""
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        return cls(c2p_r, p2c_w), cls(p2c_r, c2p_w)

    def send(self, kind: str, **payload: Any) -> None:
        payload["t"] = kind
        os.write(self.wfd, jsonfast.dumps(payload).encode() + b"\n")

    def recv(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                raise EOFError
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg: dict[str, Any] = jsonfast.loads(line)
        return msg

    def expect(self, kind: str) -> dict[str, Any]:
        """The next message, which must be `kind`; a child's error becomes ours."""
        try:
            msg = self.recv()
        except EOFError:
            raise RuntimeErr("container init exited before it was ready") from None
        if msg["t"] == "error":
            raise RuntimeErr(str(msg.get("msg")))
        if msg["t"] != kind:
            raise RuntimeErr(f"unexpected message from container init: {msg['t']}")
        return msg

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def fork_stage(stage: Callable[[Channel], object]) -> tuple[int, Channel]:
    """Fork `stage` with a channel to it: (its pid, our end). We become a subreaper first, so
    that what it forks in turn (the init, the exec'd process) is reparented to us when it
    exits and can be reaped on failure; once we exit it moves on to our own subreaper (the
    shim), as runc's does. The child never returns: nothing may unwind from it into our own
    error handling."""
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    parent, child = Channel.pair()
    pid = os.fork()
    if pid == 0:
        try:
            parent.close()
            stage(child)
        finally:
            os._exit(1)
    child.close()
    return pid, parent
