"""shim.ttrpc: our ttrpc server and client, on real unix sockets with real threads.

The raw-socket tests speak the wire by hand (containerd/ttrpc channel.go: a 10-byte big-endian
header, then the ttrpc.Request / ttrpc.Response protobuf), so they check the framing itself,
not just that our client agrees with our server.
"""

import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

from shim.ttrpc import (
    MESSAGE_LENGTH_MAX,
    Client,
    ClosedError,
    Code,
    Context,
    DeadlineExceeded,
    Server,
    TTRPCError,
    framing,
)
from shim.ttrpc.request_pb2 import KeyValue, Request, Response

SERVICE = "stacklab.test.v1.Echo"


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("ttrpc")}


@pytest.fixture
def sockdir() -> Iterator[str]:
    # Short: a unix socket path must fit in 108 bytes, and pytest's tmp_path may not.
    d = tempfile.mkdtemp(prefix="ttrpc-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Echo:
    """A service for the tests; its methods are named like proto methods."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[Context] = []
        self.barrier = threading.Barrier(20, timeout=10)

    def Echo(self, request: bytes, ctx: Context) -> bytes:
        return b"echo:" + request

    def Together(self, request: bytes, ctx: Context) -> bytes:
        # Returns only if 20 calls are inside the handler at once: proof they run concurrently.
        self.barrier.wait()
        time.sleep(int(request) % 5 / 1000)
        return request

    def Missing(self, request: bytes, ctx: Context) -> bytes:
        raise TTRPCError(Code.NOT_FOUND, "container abc: not found")

    def Crash(self, request: bytes, ctx: Context) -> bytes:
        raise RuntimeError("something broke inside")

    def Deadline(self, request: bytes, ctx: Context) -> bytes:
        self.seen.append(ctx)
        left = ctx.time_remaining()
        return b"none" if left is None else f"{left:.3f}".encode()

    def Block(self, request: bytes, ctx: Context) -> bytes:
        self.release.wait(10)
        return b"late"

    def Metadata(self, request: bytes, ctx: Context) -> bytes:
        parts = [f"{k}={v}" for k in sorted(ctx.metadata) for v in ctx.metadata[k]]
        return ";".join(parts).encode()

    def Traceparent(self, request: bytes, ctx: Context) -> bytes:
        return (ctx.get("TraceParent") or "").encode()

    def helper(self) -> None:
        """Lower-case: not served."""


@pytest.fixture
def served(sockdir: str) -> Iterator[tuple[Server, Echo, str]]:
    before = _threads()
    echo = Echo()
    server = Server(drain_timeout=5)
    server.register_object(SERVICE, echo)
    path = os.path.join(sockdir, "shim.sock")
    server.start(path)
    yield server, echo, path
    echo.release.set()
    server.shutdown()
    assert not os.path.exists(path)
    deadline = time.monotonic() + 5
    while _threads() - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _threads() - before == set()


@pytest.fixture
def client(served: tuple[Server, Echo, str]) -> Iterator[Client]:
    with Client.connect(served[2]) as c:
        yield c


# --- raw wire helpers --------------------------------------------------------------------------


def raw_connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


def raw_frame(stream_id: int, mtype: int, data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">IIBB", len(data), stream_id, mtype, flags) + data


def raw_request(stream_id: int, method: str, payload: bytes = b"") -> bytes:
    req = Request(service=SERVICE, method=method, payload=payload)
    return raw_frame(stream_id, framing.TYPE_REQUEST, req.SerializeToString())


def raw_response(s: socket.socket) -> tuple[int, int, int, Response]:
    f = s.makefile("rb")
    try:
        frame = framing.read_frame(f)
    finally:
        f.close()
    assert frame is not None, "server closed the connection without answering"
    resp = Response()
    resp.ParseFromString(frame.data)
    return frame.stream_id, frame.type, frame.flags, resp


# --- the calls ---------------------------------------------------------------------------------


def test_round_trip(client: Client) -> None:
    assert client.call(SERVICE, "Echo", b"hello") == b"echo:hello"
    assert client.call(SERVICE, "Echo", b"") == b"echo:"


def test_twenty_concurrent_calls_on_one_connection(client: Client) -> None:
    results: dict[int, bytes | BaseException] = {}

    def one(i: int) -> None:
        try:
            results[i] = client.call(SERVICE, "Together", str(i).encode(), timeout=20)
        except BaseException as err:
            results[i] = err

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: str(i).encode() for i in range(20)}


def test_unknown_service_and_method_are_unimplemented(client: Client) -> None:
    with pytest.raises(TTRPCError) as err:
        client.call("no.such.Service", "Echo", b"")
    assert err.value.code == Code.UNIMPLEMENTED
    assert int(err.value.code) == 12
    assert err.value.message == "service no.such.Service"
    with pytest.raises(TTRPCError) as err:
        client.call(SERVICE, "NoSuchMethod", b"")
    assert err.value.code == 12
    assert err.value.message == "method NoSuchMethod"
    assert str(err.value) == "rpc error: code = UNIMPLEMENTED desc = method NoSuchMethod"
    with pytest.raises(TTRPCError) as err:
        client.call(SERVICE, "helper", b"")  # not a proto-style name: not served
    assert err.value.code == 12


def test_handler_chooses_the_code(client: Client) -> None:
    with pytest.raises(TTRPCError) as err:
        client.call(SERVICE, "Missing", b"")
    assert err.value.code == Code.NOT_FOUND
    assert int(err.value.code) == 5
    assert err.value.message == "container abc: not found"


def test_plain_exception_is_unknown_and_server_lives(
    client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(TTRPCError) as err:
        client.call(SERVICE, "Crash", b"")
    assert err.value.code == Code.UNKNOWN
    assert err.value.message == "something broke inside"
    assert "Traceback" not in err.value.message
    assert "Traceback" in capsys.readouterr().err  # in the server's log instead
    assert client.call(SERVICE, "Echo", b"still") == b"echo:still"


def test_deadline_reaches_the_handler(served: tuple[Server, Echo, str], client: Client) -> None:
    left = float(client.call(SERVICE, "Deadline", b"", timeout=5))
    assert 4.0 < left <= 5.0
    assert served[1].seen[-1].deadline is not None
    assert client.call(SERVICE, "Deadline", b"") == b"none"
    assert served[1].seen[-1].deadline is None


def test_client_timeout_raises_and_connection_goes_on(
    served: tuple[Server, Echo, str], client: Client
) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as err:
        client.call(SERVICE, "Block", b"", timeout=0.2)
    assert 0.15 < time.monotonic() - started < 3
    assert err.value.code == Code.DEADLINE_EXCEEDED
    assert isinstance(err.value, TimeoutError)
    served[1].release.set()  # the late answer arrives and is dropped
    assert client.call(SERVICE, "Echo", b"after") == b"echo:after"


def test_metadata_round_trips(client: Client) -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    got = client.call(
        SERVICE,
        "Metadata",
        b"",
        metadata={"traceparent": tp, "containerd-namespace": "default", "x": ["1", "2"]},
    )
    assert got.decode() == f"containerd-namespace=default;traceparent={tp};x=1;x=2"
    assert client.call(SERVICE, "Traceparent", b"", metadata={"Traceparent": tp}) == tp.encode()
    assert client.call(SERVICE, "Traceparent", b"") == b""


def test_register_a_mapping(sockdir: str) -> None:
    server = Server()
    server.register("a.B", {"Upper": lambda req, ctx: req.upper()})
    with pytest.raises(ValueError, match="duplicate"):
        server.register("a.B", {})
    path = os.path.join(sockdir, "m.sock")
    server.start(path)
    try:
        assert os.stat(path).st_mode & 0o777 == 0o600
        with Client.connect(path) as c:
            assert c.call("a.B", "Upper", b"abc") == b"ABC"
    finally:
        server.shutdown()


# --- bad input on the wire ---------------------------------------------------------------------


def test_garbage_request_gets_an_error_and_the_connection_goes_on(
    served: tuple[Server, Echo, str],
) -> None:
    with raw_connect(served[2]) as s:
        s.sendall(raw_frame(1, framing.TYPE_REQUEST, b"\xff\xff\xff\xff not protobuf"))
        sid, mtype, _, resp = raw_response(s)
        assert (sid, mtype) == (1, framing.TYPE_RESPONSE)
        assert resp.status.code == Code.INVALID_ARGUMENT
        assert resp.status.message.startswith("unmarshal request error")
        # An even (server-side) stream id is refused on that id.
        s.sendall(raw_request(4, "Echo", b"x"))
        sid, _, _, resp = raw_response(s)
        assert (sid, resp.status.code) == (4, Code.INVALID_ARGUMENT)
        # The same connection still serves a good request.
        s.sendall(raw_request(3, "Echo", b"ok"))
        sid, mtype, flags, resp = raw_response(s)
        assert (sid, mtype, flags) == (3, framing.TYPE_RESPONSE, 0)
        assert (resp.status.code, resp.payload) == (Code.OK, b"echo:ok")
        # Stream ids must increase.
        s.sendall(raw_request(3, "Echo", b"again"))
        sid, _, _, resp = raw_response(s)
        assert (sid, resp.status.code) == (3, Code.INVALID_ARGUMENT)
    # Bytes that are no frame at all, then a hang-up mid-header: that connection ends, the
    # server does not.
    with raw_connect(served[2]) as s:
        s.sendall(b"GET / HTTP")
    with Client.connect(served[2]) as c:
        assert c.call(SERVICE, "Echo", b"alive") == b"echo:alive"


def test_oversized_frame_is_refused_and_the_connection_goes_on(
    served: tuple[Server, Echo, str],
) -> None:
    with raw_connect(served[2]) as s:
        big = MESSAGE_LENGTH_MAX + 1
        s.sendall(struct.pack(">IIBB", big, 1, framing.TYPE_REQUEST, 0) + b"\0" * big)
        sid, _, _, resp = raw_response(s)
        assert (sid, resp.status.code) == (1, Code.RESOURCE_EXHAUSTED)
        assert "exceed maximum message size" in resp.status.message
        s.sendall(raw_request(3, "Echo", b"small"))
        sid, _, _, resp = raw_response(s)
        assert (sid, resp.status.code, resp.payload) == (3, Code.OK, b"echo:small")
    with Client.connect(served[2]) as c:
        assert c.call(SERVICE, "Echo", b"other") == b"echo:other"
        with pytest.raises(TTRPCError) as err:
            c.call(SERVICE, "Echo", b"\0" * (MESSAGE_LENGTH_MAX + 1))  # refused before sending
        assert err.value.code == Code.RESOURCE_EXHAUSTED
        assert c.call(SERVICE, "Echo", b"after") == b"echo:after"


def test_client_frames_are_ttrpc_frames(sockdir: str) -> None:
    """Against a hand-written server: odd stream ids going up by 2, the real header layout,
    timeout_nano and metadata in the Request, the payload back from the Response."""
    path = os.path.join(sockdir, "raw.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    seen: list[tuple[bytes, Request]] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for _ in range(3):
                header = conn.recv(10, socket.MSG_WAITALL)
                length, sid, _, _ = struct.unpack(">IIBB", header)
                req = Request()
                req.ParseFromString(conn.recv(length, socket.MSG_WAITALL))
                seen.append((header, req))
                resp = Response(payload=req.payload[::-1])
                conn.sendall(raw_frame(sid, framing.TYPE_RESPONSE, resp.SerializeToString()))

    t = threading.Thread(target=serve)
    t.start()
    try:
        with Client.connect(path) as c:
            assert c.call("s.S", "M", b"abc") == b"cba"
            assert c.call("s.S", "M", b"xy", timeout=2.5, metadata={"k": "v"}) == b"yx"
            assert c.call("s.S", "M", b"") == b""
    finally:
        t.join(10)
        listener.close()
    assert [h[4:10] for h, _ in seen] == [
        b"\0\0\0\x01\x01\x00",
        b"\0\0\0\x03\x01\x00",
        b"\0\0\0\x05\x01\x00",
    ]
    assert seen[0][1].timeout_nano == 0
    assert seen[1][1].timeout_nano == 2_500_000_000
    assert list(seen[1][1].metadata) == [KeyValue(key="k", value="v")]


# --- closing -----------------------------------------------------------------------------------


def test_shutdown_lets_running_calls_answer_then_closes(sockdir: str) -> None:
    release = threading.Event()
    server = Server(drain_timeout=5)

    def slow_handler(request: bytes, ctx: Context) -> bytes:
        release.wait(5)
        return b"done"

    server.register("a.B", {"Slow": slow_handler})
    path = os.path.join(sockdir, "s.sock")
    server.start(path)
    c = Client.connect(path)
    got: list[bytes | BaseException] = []

    def slow() -> None:
        try:
            got.append(c.call("a.B", "Slow", b""))
        except BaseException as err:
            got.append(err)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.1)
    stopper = threading.Thread(target=server.shutdown)
    stopper.start()
    time.sleep(0.1)
    assert not os.path.exists(path)  # no new connections while draining
    release.set()
    stopper.join(10)
    t.join(10)
    assert got == [b"done"]
    with pytest.raises(ClosedError):
        c.call("a.B", "Slow", b"")
    c.close()


def test_client_close_fails_waiting_calls(served: tuple[Server, Echo, str]) -> None:
    c = Client.connect(served[2])
    got: list[BaseException] = []

    def blocked() -> None:
        try:
            c.call(SERVICE, "Block", b"")
        except BaseException as err:
            got.append(err)

    t = threading.Thread(target=blocked)
    t.start()
    time.sleep(0.1)
    c.close()
    t.join(5)
    assert len(got) == 1 and isinstance(got[0], ClosedError)
    assert got[0].code == Code.UNAVAILABLE
    with pytest.raises(ClosedError):
        c.call(SERVICE, "Echo", b"")


def test_stale_socket_file_is_replaced_live_one_is_not(sockdir: str) -> None:
    path = os.path.join(sockdir, "stale.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens
    with Server() as server:
        server.start(path)
        with pytest.raises(FileExistsError):
            Server().start(path)


# --- framing -----------------------------------------------------------------------------------


def test_framing_reads_and_refuses() -> None:
    data = raw_frame(7, framing.TYPE_DATA, b"abc", framing.FLAG_REMOTE_CLOSED)
    assert framing.encode_frame(7, framing.TYPE_DATA, framing.FLAG_REMOTE_CLOSED, b"abc") == data
    r = io.BytesIO(data)
    assert framing.read_frame(r) == framing.Frame(7, 3, 1, b"abc")
    assert framing.read_frame(r) is None  # clean end between frames
    with pytest.raises(framing.ShortRead):
        framing.read_frame(io.BytesIO(data[:5]))
    with pytest.raises(framing.ShortRead):
        framing.read_frame(io.BytesIO(data[:-1]))
    with pytest.raises(framing.OversizedFrame):
        framing.encode_frame(1, 1, 0, b"\0" * (MESSAGE_LENGTH_MAX + 1))
    big = struct.pack(">IIBB", MESSAGE_LENGTH_MAX + 1, 9, 1, 0) + b"\0" * (MESSAGE_LENGTH_MAX + 1)
    r = io.BytesIO(big + data)
    with pytest.raises(framing.OversizedFrame) as err:
        framing.read_frame(r)
    assert err.value.stream_id == 9
    assert framing.read_frame(r) == framing.Frame(7, 3, 1, b"abc")  # still in step


def test_server_import_is_lean() -> None:
    code = (
        "import sys, shim.ttrpc.server, shim.ttrpc.client\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('asyncio', 'grpc'))\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
