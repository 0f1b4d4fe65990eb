"""One writer per ingest ref inside this process, like containerd's content/local locks."""

import threading
import time

from containerd_py.errdefs import Unavailable


class RefLocks:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._since: dict[str, int] = {}  # ref -> time.time_ns() when it was taken

    def acquire(self, ref: str, wait: float) -> None:
        """Take `ref`, waiting up to `wait` seconds for its holder (containerd retries for about
        as long, so a client that reconnects right after its stream broke still gets in)."""
        deadline = time.monotonic() + wait
        with self._cond:
            while ref in self._since:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    since = self._since[ref]
                    held = (time.time_ns() - since) / 1e9
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since / 1e9))
                    raise Unavailable(f"ref {ref} locked for {held:.3f}s (since {stamp})")
                self._cond.wait(remaining)
            self._since[ref] = time.time_ns()

    def release(self, ref: str) -> None:
        with self._cond:
            self._since.pop(ref, None)
            self._cond.notify_all()
