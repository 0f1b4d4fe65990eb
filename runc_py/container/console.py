"""The container's terminal (like runc's `libcontainer/console_linux.go`): the init opens a pty
in the container's own devpts, hands the master to whoever listens on `--console-socket`
(SCM_RIGHTS, with the pty's name as the message, as containerd's shim expects) and keeps the
slave as its stdio and controlling terminal."""

import fcntl
import os
import struct
import termios

from runc_py.linux import libc

TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431


def open_pty() -> tuple[int, str]:
    """(master fd, slave path) from the container's /dev/ptmx."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    n = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
    return master, f"/dev/pts/{n}"


def set_winsize(fd: int, winsize: bytes) -> None:
    """struct winsize (rows, cols, xpixel, ypixel) onto the pty."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, winsize)


def send_master(sock_fd: int, master: int, name: str) -> None:
    import socket

    with socket.socket(fileno=sock_fd) as s:
        socket.send_fds(s, [name.encode()], [master])


def recv_master(sock_fd: int) -> int:
    import socket

    with socket.socket(fileno=os.dup(sock_fd)) as s:
        _, fds, _, _ = socket.recv_fds(s, 4096, 1)
    if not fds:
        raise OSError("no pty master received on the console socket")
    return fds[0]


def connect(path: str) -> int:
    """A connected fd to the caller's console socket, opened before pivot_root hides it."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    return s.detach()


def become_tty(slave_path: str, mount_console: bool) -> None:
    """Make the slave our stdio and controlling terminal, and /dev/console (for the init)."""
    fd = os.open(slave_path, os.O_RDWR | os.O_CLOEXEC)
    if mount_console:
        try:
            os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        except OSError:
            pass
        libc.mount(slave_path, "/dev/console", None, libc.MS_BIND)
    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(fd, target)
    os.close(fd)
