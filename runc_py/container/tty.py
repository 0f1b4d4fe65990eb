"""runc-py as the terminal of a foreground container (runc's `tty.go`): `run` and `exec` with a
terminal but no `--console-socket` and no `--detach`. The init (or the exec'd process) sends its
pty master over one end of a socketpair instead of a console socket; we put the host terminal
in raw mode, give the pty its size (and every new one on SIGWINCH), copy stdin to the master and
the master to stdout until the process exits, restore the terminal, and return its status.

Imported only on that path: the other commands never pay for select, socket or termios.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import socket
import termios

from runc_py.container import console, wait
from runc_py.errors import RuntimeErr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_CHUNK = 65536
_QUIET = 0.05  # after the exit: how long the master may stay silent before we stop draining it
_DRAIN_MAX = 2.0  # and how long at most (a background process may keep the pty open)


def host_console() -> tuple[int, bool]:
    """(fd, whether we opened it) of our terminal: stderr, stdout or stdin, the first that is a
    tty, else /dev/tty (our controlling terminal). Without one runc fails, and so do we."""
    for fd in (2, 1, 0):
        if os.isatty(fd):
            return fd, False
    try:
        return os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC), True
    except OSError as e:
        raise RuntimeErr(f"open /dev/tty: {(e.strerror or str(e)).lower()}") from None


def make_raw(attrs: list[Any]) -> list[Any]:
    """cfmakeraw(3), as runc's console package does it."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
    )
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag = (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    cc = list(cc)
    cc[termios.VMIN], cc[termios.VTIME] = 1, 0
    return [iflag, oflag, cflag, lflag, ispeed, ospeed, cc]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


class Relay:
    """One foreground terminal. `theirs` goes where a console socket's fd would (create's or
    exec's console_fd); after the process is set up, `attach()` takes the master it sent, and
    `run(pid)` relays until pid exits. `close()` always, to give the host terminal back."""

    def __init__(self) -> None:
        self.host, self._opened_host = host_console()
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ours, self.theirs = a.detach(), b.detach()
        self.master = -1
        self._saved: list[Any] | None = None

    def winsize(self) -> bytes:
        """struct winsize of the host terminal (rows, cols, xpixel, ypixel)."""
        return fcntl.ioctl(self.host, termios.TIOCGWINSZ, bytes(8))

    def resize(self) -> None:
        """The host terminal's size onto the container's pty (ignored if either is gone)."""
        try:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, self.winsize())
        except OSError:
            pass

    def attach(self) -> None:
        """Receive the master (the process sent it before reporting ready), size it, and put
        the host terminal in raw mode: every key goes to the container's own line discipline."""
        self.master = console.recv_master(self.ours)
        os.close(self.ours)
        self.ours = -1
        self.resize()
        try:
            self._saved = termios.tcgetattr(self.host)
            termios.tcsetattr(self.host, termios.TCSANOW, make_raw(self._saved))
        except termios.error:
            self._saved = None

    def run(self, pid: int) -> int:
        """Relay until pid exits; its exit status (128+N when a signal killed it)."""
        wait.forward_signals(pid)
        signal.signal(signal.SIGWINCH, lambda _s, _f: self.resize())
        exited = os.pidfd_open(pid)
        try:
            self._relay(exited)
        finally:
            os.close(exited)
        return wait.wait_exit(pid)

    def _relay(self, exited: int) -> None:
        os.set_blocking(self.master, False)
        stdin_open, master_open, pending = True, True, b""
        while True:
            rl = [exited]
            if master_open:
                rl.append(self.master)
            if stdin_open and not pending:
                rl.append(0)
            wl = [self.master] if pending and master_open else []
            r, w, _ = select.select(rl, wl, [])
            if self.master in r:
                master_open = self._copy_out()
            if 0 in r:
                try:
                    pending = os.read(0, _CHUNK)
                    stdin_open = bool(pending)  # at EOF we stop reading it, as runc does
                except BlockingIOError:
                    pass
                except OSError:
                    stdin_open = False
            if w:
                try:
                    pending = pending[os.write(self.master, pending) :]
                except BlockingIOError:
                    pass
                except OSError:
                    pending = b""
            if not master_open:
                pending = b""
            if exited in r:
                break
        if master_open:
            self._drain()

    def _copy_out(self) -> bool:
        """Master to stdout; False once the pty has no slave left (EIO) or stdout is gone."""
        try:
            data = os.read(self.master, _CHUNK)
        except BlockingIOError:
            return True
        except OSError as e:
            if e.errno == errno.EIO:
                return False
            raise
        if not data:
            return False
        try:
            _write_all(1, data)
        except OSError:
            return False
        return True

    def _drain(self) -> None:
        """What the process wrote before it exited: read until the last slave is closed, or
        the pty has been quiet for a moment."""
        import time

        deadline = time.monotonic() + _DRAIN_MAX
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.master], [], [], _QUIET)
            if not r or not self._copy_out():
                return

    def close(self) -> None:
        if self._saved is not None:
            try:
                termios.tcsetattr(self.host, termios.TCSANOW, self._saved)
            except termios.error:
                pass
            self._saved = None
        for fd in (self.master, self.ours):
            if fd >= 0:
                os.close(fd)
        self.master = self.ours = -1
        if self._opened_host:
            os.close(self.host)
            self._opened_host = False
