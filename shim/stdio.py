"""The container's stdio: the fifos (or files) containerd names in Create and Exec, opened for
the runtime to hand to the process, like containerd-shim-runc-v2's process/io.go (`createIO`).

The Go shim copies between the fifos and pipes of its own; here the process gets the fifos
themselves. Opening a fifo for writing blocks until someone reads, so stdout and stderr are
opened O_RDWR|O_NONBLOCK (which never blocks) and then made blocking; the shim closes its copies
once the runtime has started, so the reader sees end-of-file when the process exits.
"""

import fcntl
import os


def _blocking(fd: int) -> int:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    return fd


def open_input(path: str) -> int:
    """stdin: the fifo's read end (a missing path: /dev/null)."""
    if not path:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _blocking(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))


def open_output(path: str) -> int:
    """stdout or stderr: a fifo opened without blocking, or a file appended to."""
    if not path:
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    if path.startswith("file://"):
        path = path[len("file://") :]
    try:
        import stat

        fifo = stat.S_ISFIFO(os.stat(path).st_mode)
    except FileNotFoundError:
        fifo = False
    if fifo:
        return _blocking(os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)


class Stdio:
    """The three fds for one process; `close` once the runtime has them."""

    def __init__(self, stdin: str, stdout: str, stderr: str) -> None:
        self.fds: list[int] = []
        try:
            self.fds.append(open_input(stdin))
            self.fds.append(open_output(stdout))
            self.fds.append(open_output(stderr) if stderr != stdout or not stderr else self.fds[1])
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in set(self.fds):
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []


class Console:
    """A container's terminal, like the runc shim's console handling (process/init.go with
    go-runc's console socket and containerd/console's epoll copier): the runtime gets
    `--console-socket PATH`, sends the pty master back over it (SCM_RIGHTS), and the shim copies
    the stdin fifo into the master and the master out to the stdout fifo."""

    def __init__(self) -> None:
        import socket
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="pty")  # a short path: sun_path is 108 bytes
        self.path = os.path.join(self.dir, "pty.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.master = -1
        self.stdin = -1

    def receive(self, timeout: float = 10.0) -> None:
        """The master the runtime sent (it has connected by the time `create` returns)."""
        import socket

        self.listener.settimeout(timeout)
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(timeout)
                _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        finally:
            self.remove_socket()
        if not fds:
            raise OSError("console socket: the runtime sent no pty master")
        self.master = fds[0]

    def remove_socket(self) -> None:
        import shutil

        self.listener.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start_copy(self, stdin: str, stdout: str) -> None:
        """Copy in both directions, each in a thread of its own, until the container's side of
        the terminal is gone; then close stdout, so that its reader sees end-of-file."""
        import threading

        if stdin:
            # O_RDWR: the fifo never reports end-of-file to us; CloseIO ends it.
            self.stdin = os.open(stdin, os.O_RDWR | os.O_CLOEXEC)
            threading.Thread(target=self._copy_in, name="pty-in", daemon=True).start()
        out = open_output(stdout) if stdout else -1
        threading.Thread(target=self._copy_out, args=(out,), name="pty-out", daemon=True).start()

    def _copy_in(self) -> None:
        try:
            while data := os.read(self.stdin, 32768):
                os.write(self.master, data)
        except OSError:
            pass

    def _copy_out(self, out: int) -> None:
        try:
            while data := os.read(self.master, 32768):
                if out >= 0:
                    os.write(out, data)
        except OSError:
            pass  # EIO: every process holding the terminal has gone
        finally:
            if out >= 0:
                os.close(out)

    def resize(self, width: int, height: int) -> None:
        import struct
        import termios

        if self.master >= 0:
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close_stdin(self) -> None:
        if self.stdin >= 0:
            fd, self.stdin = self.stdin, -1
            os.close(fd)
