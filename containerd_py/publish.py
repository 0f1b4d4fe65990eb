"""`containerd-py publish`: the `-publish-binary` a shim runs once per event, like containerd's
cmd/containerd/command/publish.go. It reads one `google.protobuf.Any` from stdin and hands it to
Events.Publish over gRPC, with the namespace in the `containerd-namespace` metadata.

It runs once per event per shim, so it imports only grpc and the events messages: not
`containerd_py.client`, whose package pulls in the registry code.
"""

import errno
import socket
import sys

import grpc
from google.protobuf import any_pb2, empty_pb2
from google.protobuf.message import DecodeError

from containerd_py.api.services.events.v1 import events_pb2

METHOD = "/containerd.services.events.v1.Events/Publish"
NAMESPACE_KEY = "containerd-namespace"
# One deadline for connecting (retried with backoff) and the call. containerd dials for 2 s, then
# calls without a deadline; a separate connect wait (channel_ready_future) would cost grpcio
# 200 ms at channel close, two thirds of this command, and no deadline at all could let a stuck
# daemon stall the shim's event queue, which waits for this process.
PUBLISH_TIMEOUT = 10.0
# Go's dialer retries only these ("temporary") errors; FailOnNonTempDialError fails on the rest.
_TEMPORARY = {errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNABORTED}


class PublishError(Exception):
    pass


def socket_path(address: str) -> str:
    """The unix socket of `address`: a plain path or `unix://path`, as containerd's dialer
    accepts."""
    return address.removeprefix("unix://")


def read_event(data: bytes) -> any_pb2.Any:
    try:
        return any_pb2.Any.FromString(data)
    except DecodeError as e:
        raise PublishError(f"invalid event on stdin: {e}") from None


def _probe(address: str, path: str) -> None:
    """Fail at once when nothing can ever answer (no socket, refused), as containerd does,
    instead of spending the whole connect timeout on retries."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        if e.errno not in _TEMPORARY:
            raise PublishError(f'failed to dial "{address}": connect: {e.strerror}') from None
    finally:
        sock.close()


def publish(address: str, topic: str, namespace: str, event: any_pb2.Any) -> None:
    path = socket_path(address)
    _probe(address, path)
    with grpc.insecure_channel(f"unix:{path}") as channel:
        call = channel.unary_unary(
            METHOD,
            request_serializer=events_pb2.PublishRequest.SerializeToString,
            response_deserializer=empty_pb2.Empty.FromString,
        )
        try:
            call(
                events_pb2.PublishRequest(topic=topic, event=event),
                timeout=PUBLISH_TIMEOUT,
                metadata=((NAMESPACE_KEY, namespace),),
                wait_for_ready=True,  # through temporary connect failures, until the deadline
            )
        except grpc.RpcError as e:
            if not isinstance(e, grpc.Call):  # grpcio's call errors always are
                raise PublishError(str(e)) from None
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise PublishError(
                    f'failed to publish to "{address}": context deadline exceeded'
                ) from None
            # errdefs.FromGRPC: the daemon's message is the error (its text names the code).
            raise PublishError(e.details() or e.code().name) from None


def main(address: str, topic: str, namespace: str) -> int:
    """The `publish` subcommand: exit 0 once containerd has the event; 1 and one line on
    stderr (which the shim logs) otherwise."""
    try:
        if not topic:
            raise PublishError("topic required to publish event: invalid argument")
        publish(address, topic, namespace, read_event(sys.stdin.buffer.read()))
    except PublishError as e:
        print(f"containerd-py: {e}", file=sys.stderr)
        return 1
    return 0
