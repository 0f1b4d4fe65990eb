"""containerd's ttrpc socket (`<grpc address>.ttrpc`), where shims hand over their events: the
real `containerd-shim-runc-v2` forwards every /tasks/* event to `Events.Forward` at the address
in its `TTRPC_ADDRESS` environment, already stamped with time, namespace and topic. Like
containerd's services/events/ttrpc.go, the envelope goes to the exchange as it is.
"""

import os

from google.protobuf.message import DecodeError

from containerd_py.api.services.events.v1 import events_pb2
from containerd_py.errdefs import ContainerdError
from containerd_py.exchange import Exchange
from containerd_py.rpc import TRACEPARENT_KEY, status_message
from shim.api.services.ttrpc.events.v1 import events_pb2 as ttrpc_events_pb2
from shim.ttrpc.errors import Code, TTRPCError
from shim.ttrpc.server import Context, Handler, Server
from stacklab.tracing import Span

SERVICE = "containerd.services.events.ttrpc.v1.Events"
SOCKET_MODE = 0o660  # containerd's ttrpc socket is made like its gRPC one


def from_ttrpc(envelope: ttrpc_events_pb2.Envelope) -> events_pb2.Envelope:
    """The same four fields in the gRPC API's message (Go's fromTProto)."""
    converted = events_pb2.Envelope(namespace=envelope.namespace, topic=envelope.topic)
    if envelope.HasField("timestamp"):
        converted.timestamp.CopyFrom(envelope.timestamp)
    if envelope.HasField("event"):
        converted.event.CopyFrom(envelope.event)
    return converted


def forward_handler(exchange: Exchange) -> Handler:
    def forward(payload: bytes, ctx: Context) -> bytes:
        with Span("Events.Forward", "containerd-py", ctx.get(TRACEPARENT_KEY)) as span:
            try:
                request = ttrpc_events_pb2.ForwardRequest.FromString(payload)
            except DecodeError as e:
                raise TTRPCError(Code.INVALID_ARGUMENT, f"unmarshal request: {e}") from None
            span.attrs["topic"] = request.envelope.topic
            try:
                exchange.forward(from_ttrpc(request.envelope))
            except ContainerdError as e:
                raise TTRPCError(Code[e.code], status_message(e)) from None
            return b""  # google.protobuf.Empty

    return forward


def serve_events(path: str, exchange: Exchange) -> Server:
    """A ttrpc server on the unix socket `path`, serving Events.Forward into `exchange`; a
    stale socket left by a killed daemon is replaced. `shutdown()` removes the socket."""
    os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
    server = Server()
    server.register(SERVICE, {"Forward": forward_handler(exchange)})
    server.start(path)
    os.chmod(path, SOCKET_MODE)  # the ttrpc server binds 0600, a shim's mode
    return server
