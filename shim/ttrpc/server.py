"""The ttrpc server, like containerd/ttrpc server.go + services.go: plain threads on a unix socket.

One thread accepts; each connection has a reader thread that reads frames in order; each request
runs in a thread of its own, so a slow `Wait` does not hold up a `State` on the same connection;
responses go back on the request's stream id, written whole under the connection's send lock.

    server = Server()
    server.register("containerd.task.v2.Task", {"Create": create, "State": state})
    server.start("/run/stacklab/containerd/s/<id>")   # or serve(...) to block
    ...
    server.shutdown()

A handler is `handler(request_bytes, ctx) -> response_bytes`; `ctx` carries the deadline from
the request's `timeout_nano` and its metadata (e.g. `traceparent`). An exception becomes the
response's status (`TTRPCError` chooses the code); the connection and the server carry on.
Lean on purpose (ARCHITECTURE.md rule 2): no gRPC, no asyncio, only protobuf for the envelope.
"""

import os
import select
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping

from google.rpc import status_pb2

from shim.ttrpc import framing
from shim.ttrpc.errors import Code, TTRPCError, from_exception
from shim.ttrpc.request_pb2 import Request, Response


class Context:
    """What a handler knows about its call besides the request bytes (Go's context.Context)."""

    __slots__ = ("deadline", "metadata", "method", "service", "stream_id")

    def __init__(
        self,
        service: str,
        method: str,
        stream_id: int,
        metadata: dict[str, list[str]],
        deadline: float | None,
    ) -> None:
        self.service = service
        self.method = method
        self.stream_id = stream_id
        # Keys lower-cased, values in the order sent; a key may carry several values (ttrpc MD).
        self.metadata = metadata
        # time.monotonic() value after which the caller has stopped waiting; None: no deadline.
        self.deadline = deadline

    def get(self, key: str) -> str | None:
        """The first value of metadata `key` (e.g. "traceparent"), or None."""
        values = self.metadata.get(key.lower())
        return values[0] if values else None

    def time_remaining(self) -> float | None:
        """Seconds left until the deadline (negative once it has passed), or None."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


Handler = Callable[[bytes, Context], bytes]


def listen(path: str, mode: int = 0o600) -> socket.socket:
    """A listening unix socket at `path`, mode 0600 like a shim's (rule 5). A stale socket file
    left by a dead server is replaced; a live one is an error."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)
            else:
                raise FileExistsError(f"ttrpc: {path}: a server is already listening")
            finally:
                probe.close()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _status(code: int, message: str) -> status_pb2.Status:
    return status_pb2.Status(code=code, message=message)


class _Conn:
    """One accepted connection: its reader thread and its in-flight request threads."""

    def __init__(self, server: "Server", sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.send_lock = threading.Lock()
        self.lock = threading.Lock()
        self.inflight: dict[int, threading.Thread] = {}
        self.idle = threading.Condition(self.lock)
        self.closed = False
        self.reader = threading.Thread(target=self.run, name="ttrpc-conn", daemon=True)

    def send(self, stream_id: int, response: Response) -> None:
        data = response.SerializeToString()
        if len(data) > framing.MESSAGE_LENGTH_MAX:
            err = framing.OversizedFrame(len(data), stream_id)
            data = Response(status=_status(Code.RESOURCE_EXHAUSTED, str(err))).SerializeToString()
        try:
            with self.send_lock:
                framing.write_frame(self.sock, stream_id, framing.TYPE_RESPONSE, 0, data)
        except OSError:
            pass  # the client went away; its reader will notice

    def send_status(self, stream_id: int, code: int, message: str) -> None:
        self.send(stream_id, Response(status=_status(code, message)))

    def run(self) -> None:
        rfile = self.sock.makefile("rb")
        last_stream_id = 0
        try:
            while True:
                try:
                    frame = framing.read_frame(rfile)
                except framing.OversizedFrame as err:
                    self.send_status(err.stream_id, Code.RESOURCE_EXHAUSTED, str(err))
                    continue
                except (framing.FramingError, OSError, ValueError):
                    return  # short read, reset, or closed under us: nothing more to read
                if frame is None:
                    return
                if frame.stream_id % 2 != 1:
                    self.send_status(
                        frame.stream_id,
                        Code.INVALID_ARGUMENT,
                        "StreamID must be odd for client initiated streams",
                    )
                    continue
                if frame.type == framing.TYPE_DATA:
                    with self.lock:
                        active = frame.stream_id in self.inflight
                    if not active:
                        self.send_status(
                            frame.stream_id, Code.INVALID_ARGUMENT, "StreamID is no longer active"
                        )
                    continue  # streams are not supported: data on a unary call is dropped
                if frame.type != framing.TYPE_REQUEST:
                    continue  # unknown types are ignored, for compatibility (as ttrpc does)
                if frame.stream_id <= last_stream_id:
                    self.send_status(
                        frame.stream_id,
                        Code.INVALID_ARGUMENT,
                        "StreamID cannot be re-used and must increment",
                    )
                    continue
                last_stream_id = frame.stream_id
                self.start_request(frame)
        finally:
            rfile.close()
            self.finish()

    def start_request(self, frame: framing.Frame) -> None:
        request = Request()
        try:
            request.ParseFromString(frame.data)
        except Exception as err:  # protobuf's DecodeError, and nothing else we can do about it
            self.send_status(
                frame.stream_id, Code.INVALID_ARGUMENT, f"unmarshal request error: {err}"
            )
            return
        received = time.monotonic()
        thread = threading.Thread(
            target=self.handle,
            args=(frame.stream_id, request, received),
            name=f"ttrpc {request.service}.{request.method}",
            daemon=True,
        )
        with self.lock:
            self.inflight[frame.stream_id] = thread
        thread.start()

    def handle(self, stream_id: int, request: Request, received: float) -> None:
        try:
            try:
                payload = self.server.dispatch(stream_id, request, received)
                response = Response(status=_status(Code.OK, ""), payload=payload)
            except BaseException as exc:  # whatever it was, the client gets an answer
                err = from_exception(exc)
                if not isinstance(exc, TTRPCError):
                    self.server.report(request, exc)
                response = Response(status=_status(err.code, err.message))
            self.send(stream_id, response)
        finally:
            with self.lock:
                self.inflight.pop(stream_id, None)
                self.idle.notify_all()

    def wait_idle(self, deadline: float) -> bool:
        with self.lock:
            while self.inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.idle.wait(left)
        return True

    def close(self) -> None:
        """Wake the reader (it sees end of file) and stop sending."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def finish(self) -> None:
        # The client half-closed or went away: let requests already started answer (a client
        # may shut its write side and still wait for replies), then close the socket.
        if not self.closed:
            self.wait_idle(time.monotonic() + self.server.drain_timeout)
        self.close()
        with self.send_lock:
            self.sock.close()
        self.server.forget(self)


class Server:
    """A ttrpc server: register services, then `serve` (blocking) or `start` (in a thread)."""

    def __init__(self, drain_timeout: float = 10.0) -> None:
        self.services: dict[str, dict[str, Handler]] = {}
        # How long shutdown (or a closing connection) waits for running handlers.
        self.drain_timeout = drain_timeout
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._listener: socket.socket | None = None
        self._path: str | None = None
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._stopped = threading.Event()

    # --- services -----------------------------------------------------------------------------

    def register(self, service: str, methods: Mapping[str, Handler]) -> None:
        """Serve `methods` ({"Create": handler, ...}) under the full service name."""
        if service in self.services:
            raise ValueError(f"duplicate service {service} registered")
        self.services[service] = dict(methods)

    def register_object(self, service: str, obj: object) -> None:
        """Serve every public method of `obj` whose name starts with a capital letter, under
        that name — the proto's method names (`Create`, `State`, ...)."""
        methods: dict[str, Handler] = {}
        for name in dir(obj):
            if name[:1].isupper():
                attr = getattr(obj, name)
                if callable(attr):
                    methods[name] = attr
        self.register(service, methods)

    def dispatch(self, stream_id: int, request: Request, received: float) -> bytes:
        methods = self.services.get(request.service)
        if methods is None:
            raise TTRPCError(Code.UNIMPLEMENTED, f"service {request.service}")
        handler = methods.get(request.method)
        if handler is None:
            raise TTRPCError(Code.UNIMPLEMENTED, f"method {request.method}")
        metadata: dict[str, list[str]] = {}
        for kv in request.metadata:
            metadata.setdefault(kv.key.lower(), []).append(kv.value)
        deadline = received + request.timeout_nano / 1e9 if request.timeout_nano > 0 else None
        ctx = Context(request.service, request.method, stream_id, metadata, deadline)
        result = handler(request.payload, ctx)
        if not isinstance(result, bytes | bytearray | memoryview):
            raise TypeError(f"ttrpc: {request.service}.{request.method} returned {type(result)}")
        return bytes(result)

    def report(self, request: Request, exc: BaseException) -> None:
        """A handler failed with an exception that is not a TTRPCError: the client gets UNKNOWN
        and the text; the traceback goes to our stderr (the shim's log), not over the wire."""
        import traceback

        print(
            f"ttrpc: {request.service}.{request.method}: unexpected error",
            "".join(traceback.format_exception(exc)),
            file=sys.stderr,
            sep="\n",
            end="",
        )

    # --- serving ------------------------------------------------------------------------------

    def _bind(self, where: str | socket.socket) -> None:
        if self._listener is not None:
            raise RuntimeError("ttrpc: server already serving")
        if isinstance(where, str):
            self._listener = listen(where)
            self._path = where
        else:
            self._listener = where  # e.g. the socket a shim's `start` hands its child as fd 3
        self._wake_r, self._wake_w = os.pipe()

    def serve(self, where: str | socket.socket) -> None:
        """Accept and serve connections on `where` (a socket path or a listening socket) until
        `shutdown`."""
        self._bind(where)
        self._accept_loop()

    def start(self, where: str | socket.socket) -> None:
        """Like serve, in a background thread; returns once the socket is listening."""
        self._bind(where)
        self._thread = threading.Thread(target=self._accept_loop, name="ttrpc-accept", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        try:
            while not self._done.is_set():
                readable, _, _ = select.select([listener.fileno(), self._wake_r], [], [])
                if self._wake_r in readable:
                    break
                try:
                    sock, _ = listener.accept()
                except OSError:
                    if self._done.is_set():
                        break
                    time.sleep(0.01)  # e.g. EMFILE: back off instead of spinning
                    continue
                conn = _Conn(self, sock)
                with self._lock:
                    if self._done.is_set():
                        sock.close()
                        break
                    self._conns.add(conn)
                conn.reader.start()
        finally:
            self._stopped.set()

    def forget(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.discard(conn)

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting, remove the socket file, let running handlers finish (up to `timeout`,
        default `drain_timeout`), then close every connection and join the threads."""
        if self._done.is_set():
            return
        self._done.set()
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join()
        elif self._listener is not None:
            self._stopped.wait(5)
        if self._listener is not None:
            self._listener.close()
        if self._path is not None:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass
        deadline = time.monotonic() + (self.drain_timeout if timeout is None else timeout)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.wait_idle(deadline)
        for conn in conns:
            conn.close()
        for conn in conns:
            conn.reader.join(max(0.0, deadline - time.monotonic()) + 1.0)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def close(self) -> None:
        """Shut down without waiting for running handlers."""
        self.shutdown(timeout=0)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
