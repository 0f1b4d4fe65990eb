"""`containerd-shim-runpy-v2`: the shim binary as containerd invokes it, like containerd's
runtime/v2/shim/shim.go (the `Run` every Go shim's main calls) with the runc shim's
`StartShim` and `Cleanup` (runtime/v2/runc/v2/service.go).

    containerd-shim-runpy-v2 -namespace NS -address A -publish-binary B -id ID [-debug] start
    containerd-shim-runpy-v2 -namespace NS -address A -publish-binary B -id ID -bundle B delete
    containerd-shim-runpy-v2 -namespace NS -address A -publish-binary B -id ID   (serve)

containerd runs `start` in the bundle directory and reads the address it prints (all of its
output: stdout and stderr together); `start` binds the socket and forks the serving shim,
detached (the Go shim re-executes itself and hands it the socket as fd 3). `delete` cleans up
after a shim that died and prints a DeleteResponse. Flags are Go's: one dash or two,
`-flag value` or `-flag=value`.
"""

import os
import sys

if sys.version_info < (3, 12):  # CPython's own SHA-256: hashlib loads OpenSSL (~4 ms a start)
    from _sha256 import sha256  # type: ignore[import-not-found]
else:
    from hashlib import sha256

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

COMMANDS = ("start", "delete", "serve")
VALUE_FLAGS = ("namespace", "address", "publish-binary", "id", "bundle", "socket")
BOOL_FLAGS = ("debug", "v")
LISTEN_FD = 3  # where a Go shim's `start` hands the serving shim its socket (ExtraFiles)
REAL_SOCKET_DIR = "/run/containerd/s"
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the NUL


class Flags:
    def __init__(self) -> None:
        self.namespace = ""
        self.address = ""
        self.publish_binary = ""
        self.id = ""
        self.bundle = ""
        self.socket = ""
        self.debug = False
        self.v = False
        self.command = "serve"


def usage(message: str) -> "SystemExit":
    print(f"containerd-shim-runpy-v2: {message}", file=sys.stderr)
    return SystemExit(2)


def parse(argv: list[str]) -> Flags:
    flags = Flags()
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--" or not arg.startswith("-") or arg == "-":
            rest += [arg] if arg != "--" else []
            rest += argv[i:]
            break
        name, eq, value = arg.lstrip("-").partition("=")
        if name in BOOL_FLAGS:
            setattr(flags, name, value.lower() not in ("false", "0") if eq else True)
        elif name in VALUE_FLAGS:
            if not eq:
                if i >= len(argv):
                    raise usage(f"flag needs an argument: -{name}")
                value = argv[i]
                i += 1
            setattr(flags, name.replace("-", "_"), value)
        else:
            raise usage(f"flag provided but not defined: -{name}")
    if rest:
        if rest[0] not in COMMANDS or len(rest) > 1:
            raise usage(f"unknown command {' '.join(rest)!r}")
        flags.command = rest[0]
    return flags


def socket_dir() -> str:
    """Where the shims' sockets go: under the stack root when STACKLAB_ROOT is set (like
    `/run/containerd/s`, scaled under it), else real containerd's own /run/containerd/s — the
    directory containerd, its tools and our tests' leftover checks look in — so that a shim run
    by the system containerd needs no configuration."""
    if os.environ.get("STACKLAB_ROOT"):
        from stacklab import paths

        return paths.shim_socket_dir()
    return REAL_SOCKET_DIR


def socket_path(flags: Flags) -> str:
    """`<dir>/sha256(<containerd address>/<namespace>/<id>)`, like the shim package's
    SocketAddress; in /run/containerd/s when the stack root is too deep for a unix socket."""
    digest = sha256(os.path.join(flags.address, flags.namespace, flags.id).encode())
    path = os.path.join(socket_dir(), digest.hexdigest())
    if len(path.encode()) > SUN_PATH_MAX:
        path = os.path.join(REAL_SOCKET_DIR, digest.hexdigest())
    return path


def start(flags: Flags) -> int:
    """Launch the serving shim detached and print its address (the runc shim's StartShim)."""
    import socket

    if not sys.stdin.isatty():
        sys.stdin.buffer.read()  # containerd writes the runtime options here; we take them in Create
    path = socket_path(flags)
    address = f"unix://{path}"
    bundle = os.getcwd()
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        pass
    else:  # a shim already serves this id: containerd is to use it
        probe.close()
        write_address(bundle, address)
        print(address)
        return 0
    finally:
        probe.close()
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    try:
        os.unlink(path)  # nobody answered on it: a dead shim's
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(128)
    # The serving shim is a fork of this process (the Go shim, which cannot fork, re-executes
    # itself and hands over the socket as fd 3; forking saves a second interpreter start-up).
    # It leaves containerd's session and process group and lets go of the pipe containerd
    # reads our output from; when we exit it is re-parented to init (or a subreaper above us).
    sys.stdout.flush()
    if os.fork() == 0:
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
            code = serve(flags, sock, path)
        except BaseException:
            import traceback

            traceback.print_exc()  # to the shim log, if serve got as far as opening it
            code = 1
        os._exit(code)
    write_address(bundle, address)
    print(address)
    return 0


def write_address(bundle: str, address: str) -> None:
    """<bundle>/address, which containerd reads to reconnect after a restart."""
    tmp = os.path.join(bundle, "address.tmp")
    with open(tmp, "w") as f:
        f.write(address)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(bundle, "address"))


def delete(flags: Flags) -> int:
    """Clean up after a shim that died (the runc shim's Cleanup): force-delete the container,
    unmount its rootfs, and print the DeleteResponse containerd reads from stdout.

    containerd 1.6 runs this after every shim exit, even a clean one, and waits for it before
    `ctr task rm` returns: so it imports no protobuf and skips the runtime when the container's
    state is already gone."""
    import time

    from shim import mount, runtime

    bundle = flags.bundle or os.getcwd()
    opts = runtime.read_options(bundle)
    root = opts.get("root") or os.path.join(runtime.default_root(), flags.namespace)
    binary = opts.get("binary_name") or runtime.default_binary()
    if os.path.exists(os.path.join(root, flags.id)):
        rt = runtime.Runtime(binary, root, os.path.join(bundle, "log.json"))
        try:
            rt.run("delete", "--force", flags.id)
        except runtime.CommandError as err:
            if "does not exist" not in err.message:  # e.g. deleted already, before the shim died
                print(f"shim delete: {err}", file=sys.stderr)
        except OSError as err:
            print(f"shim delete: {binary}: {err}", file=sys.stderr)
    mount.unmount_all(os.path.join(bundle, "rootfs"))
    try:
        with open(os.path.join(bundle, "init.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        pid = 0
    try:
        os.unlink(socket_path(flags))  # the dead shim's socket
    except OSError:
        pass
    sys.stdout.buffer.write(delete_response(pid, 128 + 9, time.time_ns()))  # 9: SIGKILL
    sys.stdout.flush()
    return 0


def delete_response(pid: int, exit_status: int, exited_at_ns: int) -> bytes:
    """containerd.task.v2.DeleteResponse {pid = 1, exit_status = 2, exited_at = 3 (Timestamp
    {seconds = 1, nanos = 2})} in protobuf's wire format, written by hand to spare `delete`
    importing protobuf (tests/unit/test_shim_cli.py holds it to the generated stub)."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(number: int, n: int) -> bytes:  # a varint field, omitted when 0 like proto3
        return varint(number << 3) + varint(n) if n else b""

    seconds, nanos = divmod(exited_at_ns, 1_000_000_000)
    ts = field(1, seconds) + field(2, nanos)
    return field(1, pid) + field(2, exit_status) + varint(3 << 3 | 2) + varint(len(ts)) + ts


def open_log() -> None:
    """stderr to the `log` fifo containerd opened in the bundle (its shim log, copied into
    containerd's own), as the Go shim does; left as is if nobody reads it."""
    try:
        fd = os.open("log", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    import fcntl

    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    os.dup2(fd, 2)
    os.close(fd)


def serve(flags: Flags, sock: "socket.socket | None" = None, path: str = "") -> int:
    """The long-lived shim: subreaper of its container, serving the Task service over ttrpc on
    `sock` (from `start`), or on fd 3 or `-socket` when started some other way."""
    import signal
    import socket
    import threading

    from shim import reaper as reaping
    from shim.events import Publisher
    from shim.service import SERVICE, Service
    from shim.ttrpc import Server, listen

    open_log()
    reaping.set_subreaper()
    reaping.set_name("containerd-shim")
    reaper = reaping.Reaper()
    reaper.install()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    if sock is not None:
        pass
    elif flags.socket:
        path, sock = flags.socket, listen(flags.socket, 0o600)
    else:
        path = socket_path(flags)
        try:
            sock = socket.socket(fileno=LISTEN_FD)
        except OSError:
            sock = listen(path, 0o600)
    publisher = Publisher(flags.publish_binary, flags.address, flags.namespace, reaper)
    server = Server()
    done = threading.Event()

    def shutdown() -> None:
        done.set()
        # After the Shutdown response is on its way: stop serving, remove the socket.
        threading.Timer(0.05, server.shutdown, kwargs={"timeout": 1.0}).start()

    svc = Service(flags.namespace, flags.id, publisher, reaper, shutdown)
    server.register_object(SERVICE, svc)
    try:
        server.serve(sock)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        publisher.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    flags = parse(sys.argv[1:] if argv is None else argv)
    if flags.v:
        print("containerd-shim-runpy-v2 (stacklab) 0.1.0")
        return 0
    if not flags.id or not flags.namespace:
        raise usage("-id and -namespace are required")
    if flags.command == "start":
        return start(flags)
    if flags.command == "delete":
        return delete(flags)
    return serve(flags)


if __name__ == "__main__":
    sys.exit(main())
