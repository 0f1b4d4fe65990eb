"""How shims hand their events to containerd-py, both ways containerd 1.6 accepts them:
`containerd-py publish` (the `-publish-binary` our shim runs, an Any on stdin, Events.Publish
over gRPC) and Events.Forward on the ttrpc socket (what containerd-shim-runc-v2 calls at its
TTRPC_ADDRESS). Every path ends in the exchange, where a subscriber sees namespace, topic and
event as the shim sent them."""

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2, timestamp_pb2

from containerd_py import config
from containerd_py import publish as publish_command
from containerd_py.api.services.events.v1 import events_pb2
from containerd_py.exchange import Exchange, Subscription
from containerd_py.rpc import bind
from containerd_py.services.events import EventsService
from containerd_py.ttrpc_events import SERVICE, serve_events
from shim.api.events import task_pb2
from shim.api.services.ttrpc.events.v1 import events_pb2 as ttrpc_events_pb2
from shim.events import Publisher
from shim.ttrpc import Client, Code, TTRPCError

BINARY = str(Path(sys.executable).parent / "containerd-py")
EXIT = task_pb2.TaskExit(container_id="c1", id="c1", pid=42, exit_status=3)


def packed(event: task_pb2.TaskExit | task_pb2.TaskDelete) -> any_pb2.Any:
    """As containerd 1.6 packs an event: type_url is the bare full name."""
    return any_pb2.Any(type_url=event.DESCRIPTOR.full_name, value=event.SerializeToString())


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short directory (unix socket paths are limited to 108 bytes) that is also the
    STACKLAB_ROOT, so the spans of the calls stay in it."""
    path = Path(tempfile.mkdtemp(prefix="cpub-", dir="/tmp"))
    monkeypatch.setenv("STACKLAB_ROOT", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def exchange() -> Exchange:
    return Exchange()


@pytest.fixture
def grpc_socket(root: Path, exchange: Exchange) -> Iterator[str]:
    """containerd-py's Events service on a gRPC unix socket, bound as the daemon binds it."""
    path = str(root / "containerd.sock")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        handlers=[bind(events_pb2.DESCRIPTOR.services_by_name["Events"], EventsService(exchange))],
    )
    server.add_insecure_port(f"unix:{path}")
    server.start()
    yield path
    server.stop(grace=None).wait()


def received(subscription: Subscription) -> events_pb2.Envelope:
    envelope = subscription.next(10)
    assert envelope is not None, "no event reached the exchange"
    return envelope


def publish(
    *flags: str, stdin: bytes = packed(EXIT).SerializeToString()
) -> "subprocess.CompletedProcess[str]":
    done = subprocess.run(
        [BINARY, *flags], input=stdin, capture_output=True, timeout=30, check=False
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


# --- ttrpc: Events.Forward, as containerd-shim-runc-v2 sends it -------------------------------


def forward(path: str, envelope: ttrpc_events_pb2.Envelope) -> bytes:
    request = ttrpc_events_pb2.ForwardRequest(envelope=envelope)
    with Client.connect(path, timeout=5) as client:
        return client.call(SERVICE, "Forward", request.SerializeToString(), 10)


def test_forward_over_ttrpc_reaches_subscribers(root: Path, exchange: Exchange) -> None:
    path = str(root / "containerd.sock.ttrpc")
    subscription = exchange.subscribe(['topic=="/tasks/exit"'])
    server = serve_events(path, exchange)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        stamp = timestamp_pb2.Timestamp(seconds=1700000000, nanos=5)
        envelope = ttrpc_events_pb2.Envelope(
            timestamp=stamp, namespace="k8s.io", topic="/tasks/exit", event=packed(EXIT)
        )
        assert forward(path, envelope) == b""  # google.protobuf.Empty
        got = received(subscription)
        assert (got.timestamp, got.namespace, got.topic) == (stamp, "k8s.io", "/tasks/exit")
        assert got.event.type_url == "containerd.events.TaskExit"
        assert task_pb2.TaskExit.FromString(got.event.value) == EXIT
    finally:
        server.shutdown()
    assert not os.path.exists(path)


@pytest.mark.parametrize(
    ("namespace", "topic", "message"),
    [
        ("ns", "tasks/exit", "must start with '/'"),
        ("ns", "", "must not be empty"),
        ("bad ns", "/tasks/exit", 'identifier "bad ns" must match'),
        ("", "/tasks/exit", "identifier must not be empty"),
    ],
)
def test_forward_refuses_a_bad_namespace_or_topic(
    root: Path, exchange: Exchange, namespace: str, topic: str, message: str
) -> None:
    path = str(root / "events.ttrpc")
    subscription = exchange.subscribe([])
    server = serve_events(path, exchange)
    try:
        envelope = ttrpc_events_pb2.Envelope(namespace=namespace, topic=topic, event=packed(EXIT))
        with pytest.raises(TTRPCError) as raised:
            forward(path, envelope)
        text = raised.value.message
        assert raised.value.code == Code.INVALID_ARGUMENT
        assert message in text and text.endswith(": invalid argument")
        assert subscription.next(0.1) is None
    finally:
        server.shutdown()


def test_serve_events_replaces_a_stale_socket(root: Path, exchange: Exchange) -> None:
    """A daemon killed with SIGKILL leaves its socket file; the next one serves in its place."""
    path = str(root / "sub" / "events.ttrpc")
    os.makedirs(os.path.dirname(path))
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    server = serve_events(path, exchange)
    try:
        subscription = exchange.subscribe([])
        forward(path, ttrpc_events_pb2.Envelope(namespace="ns", topic="/tasks/start"))
        assert received(subscription).topic == "/tasks/start"
    finally:
        server.shutdown()


# --- `containerd-py publish`, as our shim runs it ---------------------------------------------


@pytest.mark.parametrize("scheme", ["", "unix://"])
def test_publish_command_reaches_subscribers(
    grpc_socket: str, exchange: Exchange, scheme: str
) -> None:
    subscription = exchange.subscribe(['namespace=="ns"'])
    done = publish(
        "--address", scheme + grpc_socket, "publish", "--topic", "/tasks/exit", "--namespace", "ns"
    )
    assert (done.returncode, done.stderr) == (0, "")
    got = received(subscription)
    assert (got.namespace, got.topic) == ("ns", "/tasks/exit")
    assert got.event == packed(EXIT)
    assert got.HasField("timestamp")  # stamped by the daemon, as containerd's Publish does


def test_publish_without_a_topic_fails_clearly(grpc_socket: str) -> None:
    done = publish("--address", grpc_socket, "publish", "--namespace", "ns")
    assert done.returncode == 1
    assert done.stderr == "containerd-py: topic required to publish event: invalid argument\n"


def test_publish_of_garbage_fails_clearly(grpc_socket: str, exchange: Exchange) -> None:
    subscription = exchange.subscribe([])
    done = publish(
        "--address", grpc_socket, "publish", "--topic", "/tasks/exit", "--namespace", "ns",
        stdin=b"\x0a\x10truncated",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("containerd-py: invalid event on stdin: ")
    assert "Traceback" not in done.stderr
    assert subscription.next(0.1) is None


def test_publish_to_nothing_fails_fast_and_clearly(root: Path) -> None:
    missing = str(root / "missing.sock")
    done = publish("--address", missing, "publish", "--topic", "/tasks/exit", "--namespace", "ns")
    assert done.returncode == 1
    assert done.stderr == (
        f'containerd-py: failed to dial "{missing}": connect: No such file or directory\n'
    )
    stale = str(root / "stale.sock")  # what a killed daemon leaves: a socket nobody serves
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(stale)
    listener.close()
    done = publish("--address", stale, "publish", "--topic", "/tasks/exit", "--namespace", "ns")
    assert done.returncode == 1
    assert done.stderr == f'containerd-py: failed to dial "{stale}": connect: Connection refused\n'


def test_publish_gives_up_on_a_daemon_that_never_answers(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shim waits for each publish: a listener that never speaks gRPC must not hold it."""
    monkeypatch.setattr(publish_command, "PUBLISH_TIMEOUT", 0.5)
    mute = str(root / "mute.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(mute)
    listener.listen(8)
    try:
        with pytest.raises(publish_command.PublishError) as raised:
            publish_command.publish(mute, "/tasks/exit", "ns", packed(EXIT))
    finally:
        listener.close()
    assert str(raised.value) == f'failed to publish to "{mute}": context deadline exceeded'


def test_publish_passes_on_the_daemons_refusal(grpc_socket: str) -> None:
    done = publish("--address", grpc_socket, "publish", "--topic", "/tasks/exit")
    assert (done.returncode, done.stderr) == (
        1, "containerd-py: namespace is required: failed precondition\n"
    )  # fmt: skip
    done = publish(
        "--address", grpc_socket, "publish", "--topic", "/tasks/exit", "--namespace", "bad ns"
    )
    assert done.returncode == 1
    assert done.stderr.startswith('containerd-py: identifier "bad ns" must match')
    assert done.stderr.endswith(": invalid argument\n")


def shim_events_in_order(exchange: Exchange, publisher: Publisher, namespace: str) -> None:
    """Our shim's exit then delete, through `publisher`, reach `exchange` in that order."""
    subscription = exchange.subscribe(['topic~="^/tasks/"'])
    delete = task_pb2.TaskDelete(container_id="c1", id="c1", pid=42, exit_status=3)
    publisher.publish("/tasks/exit", EXIT)
    publisher.publish("/tasks/delete", delete)
    publisher.close(timeout=30)
    first, second = received(subscription), received(subscription)
    assert [(e.namespace, e.topic) for e in (first, second)] == [
        (namespace, "/tasks/exit"),
        (namespace, "/tasks/delete"),
    ]
    assert (first.event, second.event) == (packed(EXIT), packed(delete))


def test_our_shim_publishes_through_the_binary(
    grpc_socket: str, exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """shim/events.py with containerd-py as its -publish-binary and no TTRPC_ADDRESS."""
    monkeypatch.delenv("TTRPC_ADDRESS", raising=False)
    shim_events_in_order(exchange, Publisher(BINARY, grpc_socket, "default"), "default")


def test_our_shim_forwards_over_ttrpc(
    root: Path, exchange: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """shim/events.py with TTRPC_ADDRESS set, as containerd-py starts its shims: no binary."""
    path = str(root / "containerd.sock.ttrpc")
    server = serve_events(path, exchange)
    try:
        monkeypatch.setenv("TTRPC_ADDRESS", path)
        shim_events_in_order(exchange, Publisher("", str(root / "none.sock"), "k8s.io"), "k8s.io")
    finally:
        server.shutdown()


@pytest.mark.skipif(not shutil.which("containerd"), reason="the real containerd is not installed")
def test_real_containerd_publish_reaches_containerd_py(
    grpc_socket: str, exchange: Exchange
) -> None:
    """`containerd publish` (a shim's -publish-binary under the real containerd) works against
    containerd-py: the same command line, stdin and gRPC call."""
    subscription = exchange.subscribe([])
    done = subprocess.run(
        [str(shutil.which("containerd")), "--address", grpc_socket, "publish",
         "--topic", "/tasks/exit", "--namespace", "ns"],
        input=packed(EXIT).SerializeToString(), capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = received(subscription)
    assert (got.namespace, got.topic, got.event) == ("ns", "/tasks/exit", packed(EXIT))


# --- where the ttrpc socket is -----------------------------------------------------------------


def test_ttrpc_address_follows_the_grpc_address_unless_configured(tmp_path: Path) -> None:
    cfg = config.load(None)
    cfg.address = "/run/x/containerd.sock"  # as --address sets it, after the file is read
    assert cfg.ttrpc_socket() == "/run/x/containerd.sock.ttrpc"
    path = tmp_path / "config.toml"
    path.write_text('version = 2\n[ttrpc]\n  address = "/run/x/events.ttrpc"\n')
    cfg = config.load(str(path))
    cfg.address = "/elsewhere.sock"
    assert (cfg.ttrpc_address, cfg.ttrpc_socket()) == ("/run/x/events.ttrpc",) * 2
