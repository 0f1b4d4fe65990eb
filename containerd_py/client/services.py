"""Typed callables for containerd's gRPC methods, built from the service descriptors (no
generated stubs, as on the server side), with containerd's metadata on every call and the
status codes turned back into `containerd_py.errdefs` errors."""

from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor

from containerd_py.errdefs import BY_CODE, ContainerdError

Metadata = Callable[[], list[tuple[str, str]]]


def error_from(e: grpc.RpcError) -> ContainerdError:
    code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = e.details() if isinstance(e, grpc.Call) else str(e)
    cls = BY_CODE.get(code.name, ContainerdError)
    error = cls(details or code.name.lower())
    if cls is ContainerdError:
        error.code = code.name
    return error


class Stub:
    """`stub.Method(request)` for each method of a service; streaming methods return
    iterators (and take one, for client streaming)."""

    def __init__(
        self, channel: grpc.Channel, service: ServiceDescriptor, metadata: Metadata
    ) -> None:
        self._metadata = metadata
        self._methods: dict[str, tuple[Callable[..., Any], bool]] = {}
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            request = message_factory.GetMessageClass(method.input_type)
            response = message_factory.GetMessageClass(method.output_type)
            kind: Callable[..., Any] = {
                (False, False): channel.unary_unary,
                (False, True): channel.unary_stream,
                (True, False): channel.stream_unary,
                (True, True): channel.stream_stream,
            }[(method.client_streaming, method.server_streaming)]
            self._methods[method.name] = (
                kind(
                    path,
                    request_serializer=request.SerializeToString,
                    response_deserializer=response.FromString,
                ),
                method.server_streaming,
            )

    def __getattr__(self, name: str) -> Callable[..., Any]:
        try:
            fn, streaming = self._methods[name]
        except KeyError:
            raise AttributeError(name) from None
        metadata = self._metadata

        if streaming:

            def stream(request: Any, timeout: float | None = None) -> Stream:
                return Stream(fn(request, metadata=metadata(), timeout=timeout))

            return stream

        def unary(request: Any, timeout: float | None = None) -> Any:
            try:
                return fn(request, metadata=metadata(), timeout=timeout)
            except grpc.RpcError as e:
                raise error_from(e) from None

        return unary


class Stream:
    """A server stream: iterate it for the responses; `cancel()` ends it (iteration then
    stops quietly), as cancelling the context of a Go client's stream does."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._call
        except grpc.RpcError as e:
            if isinstance(e, grpc.Call) and e.code() == grpc.StatusCode.CANCELLED:
                return
            raise error_from(e) from None

    def cancel(self) -> None:
        self._call.cancel()
