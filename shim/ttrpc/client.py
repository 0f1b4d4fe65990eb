"""The ttrpc client, like containerd/ttrpc client.go: what containerd-py uses to talk to a shim.

One connection carries many calls at once: each call gets the next odd stream id (1, 3, 5, ...),
its request frame is sent under a lock (so ids on the wire only increase), and one reader thread
hands every response to the call waiting on its stream id.

    with Client.connect("/run/stacklab/containerd/s/<id>") as client:
        reply = client.call("containerd.task.v2.Task", "State", request_bytes,
                            timeout=5, metadata={"traceparent": tp})

A non-OK status raises `TTRPCError(code, message)`; a timeout raises `DeadlineExceeded`; a
closed connection raises `ClosedError` (ttrpc's ErrClosed).
"""

import socket
import threading
import time
from collections.abc import Mapping, Sequence

from shim.ttrpc import framing
from shim.ttrpc.errors import ClosedError, Code, DeadlineExceeded, TTRPCError
from shim.ttrpc.request_pb2 import KeyValue, Request, Response

Metadata = Mapping[str, str | Sequence[str]]


class _Call:
    __slots__ = ("done", "error", "response")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: Response | None = None
        self.error: TTRPCError | None = None


class Client:
    """A ttrpc client on one connected stream socket; safe to call from many threads."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()  # held across stream id allocation and the send
        self._lock = threading.Lock()  # guards _calls and _closed
        self._calls: dict[int, _Call] = {}
        self._next_stream_id = 1
        self._closed: ClosedError | None = None
        self._reader = threading.Thread(target=self._receive_loop, name="ttrpc-client", daemon=True)
        self._reader.start()

    @classmethod
    def connect(cls, path: str, timeout: float | None = None) -> "Client":
        """Connect to the unix socket at `path` (a ttrpc server, e.g. a shim)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def call(
        self,
        service: str,
        method: str,
        request: bytes,
        timeout: float | None = None,
        metadata: Metadata | None = None,
    ) -> bytes:
        """Call `service`.`method` with the serialized request message; return the serialized
        reply. `timeout` (seconds) is sent as the request's timeout_nano and bounds the wait."""
        req = Request(service=service, method=method, payload=request)
        if timeout is not None:
            req.timeout_nano = max(1, int(timeout * 1e9))
        if metadata:
            for key, values in metadata.items():
                for value in [values] if isinstance(values, str) else values:
                    req.metadata.append(KeyValue(key=key.lower(), value=value))
        data = req.SerializeToString()
        if len(data) > framing.MESSAGE_LENGTH_MAX:
            raise TTRPCError(Code.RESOURCE_EXHAUSTED, str(framing.OversizedFrame(len(data))))
        deadline = None if timeout is None else time.monotonic() + timeout

        call = _Call()
        with self._send_lock:
            with self._lock:
                if self._closed is not None:
                    raise self._closed
                stream_id = self._next_stream_id
                self._next_stream_id += 2
                self._calls[stream_id] = call
            try:
                framing.write_frame(self._sock, stream_id, framing.TYPE_REQUEST, 0, data)
            except OSError as err:
                self._forget(stream_id)
                raise ClosedError(f"ttrpc: closed: {err}") from err

        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not call.done.wait(left):
            self._forget(stream_id)
            if not call.done.is_set():
                raise DeadlineExceeded()
        if call.error is not None:
            raise call.error
        response = call.response
        assert response is not None
        if response.HasField("status") and response.status.code != Code.OK:
            raise TTRPCError(response.status.code, response.status.message)
        return response.payload

    def _forget(self, stream_id: int) -> None:
        with self._lock:
            self._calls.pop(stream_id, None)

    def _receive_loop(self) -> None:
        rfile = self._sock.makefile("rb")
        reason = "ttrpc: closed"
        try:
            while True:
                try:
                    frame = framing.read_frame(rfile)
                except framing.OversizedFrame as err:
                    # The data is already skipped: fail just that call, as ttrpc does.
                    self._finish(err.stream_id, error=TTRPCError(Code.RESOURCE_EXHAUSTED, str(err)))
                    continue
                except (framing.FramingError, OSError, ValueError) as err:
                    reason = f"ttrpc: closed: {err}"
                    return
                if frame is None:
                    return
                if frame.type != framing.TYPE_RESPONSE:
                    continue  # no streams in this client: data frames have no taker
                response = Response()
                try:
                    response.ParseFromString(frame.data)
                except Exception as err:
                    error = TTRPCError(Code.INTERNAL, f"ttrpc: bad response: {err}")
                    self._finish(frame.stream_id, error=error)
                    continue
                self._finish(frame.stream_id, response=response)
        finally:
            rfile.close()
            self._fail_all(ClosedError(reason))

    def _finish(
        self, stream_id: int, response: Response | None = None, error: TTRPCError | None = None
    ) -> None:
        with self._lock:
            call = self._calls.pop(stream_id, None)
        if call is None:
            return  # a late answer to a call that timed out
        call.response, call.error = response, error
        call.done.set()

    def _fail_all(self, error: ClosedError) -> None:
        with self._lock:
            if self._closed is None:
                self._closed = error
            calls, self._calls = self._calls, {}
        for call in calls.values():
            call.error = error
            call.done.set()

    def close(self) -> None:
        """Close the connection; calls still waiting raise ClosedError."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if threading.current_thread() is not self._reader:
            self._reader.join()
        self._fail_all(ClosedError())
        self._sock.close()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
