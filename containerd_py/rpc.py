"""Binding our service classes to grpcio, the way containerd's gRPC plugins register.

There are no generated gRPC stubs: `bind()` reads a service's descriptor from its `_pb2`
module and routes each method to the same-named method of our implementation, with the
streaming shape the descriptor says. Around every call it does what containerd's interceptors
do: read the namespace (`containerd-namespace`) and lease (`containerd-lease`) from the
metadata, record a span named `Service.Method` that continues the caller's `traceparent`, and
turn our errors (`errdefs`) into gRPC status codes with containerd's message shape — never a
traceback.
"""

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from containerd_py.errdefs import ContainerdError, FailedPrecondition
from containerd_py.metadata.identifiers import validate
from stacklab.tracing import Span

log = logging.getLogger("containerd-py")

NAMESPACE_KEY = "containerd-namespace"
LEASE_KEY = "containerd-lease"
TRACEPARENT_KEY = "traceparent"

# Go's errdefs append the sentinel's text to every message: ctr prints them that way.
_SUFFIX = {
    "INVALID_ARGUMENT": "invalid argument",
    "NOT_FOUND": "not found",
    "ALREADY_EXISTS": "already exists",
    "FAILED_PRECONDITION": "failed precondition",
    "UNAVAILABLE": "unavailable",
    "UNIMPLEMENTED": "not implemented",
    "ABORTED": "aborted",
    "RESOURCE_EXHAUSTED": "resource exhausted",
}


class Call:
    """One request's context: what the metadata carried, and the span recording it."""

    def __init__(self, context: grpc.ServicerContext, span: Span) -> None:
        self.context = context
        self.span = span
        self.metadata: dict[str, str] = {}
        for key, value in context.invocation_metadata():
            if isinstance(value, str):
                self.metadata.setdefault(key, value)

    @property
    def namespace(self) -> str:
        """The request's namespace; containerd refuses namespaced calls without one."""
        ns = self.metadata.get(NAMESPACE_KEY, "")
        if not ns:
            raise FailedPrecondition("namespace is required")
        validate(ns)
        return ns

    @property
    def lease(self) -> str | None:
        return self.metadata.get(LEASE_KEY) or None

    @property
    def traceparent(self) -> str:
        """For the next hop: this call's span as the parent."""
        return self.span.traceparent

    def active(self) -> bool:
        return bool(self.context.is_active())


def status_message(error: ContainerdError) -> str:
    text = str(error) or error.code.lower().replace("_", " ")
    suffix = _SUFFIX.get(error.code)
    if suffix and not text.endswith(suffix):
        text = f"{text}: {suffix}"
    return text


def _abort(context: grpc.ServicerContext, error: BaseException, name: str) -> None:
    if isinstance(error, ContainerdError):
        context.abort(grpc.StatusCode[error.code], status_message(error))
    log.exception("%s: unexpected error", name)
    context.abort(grpc.StatusCode.INTERNAL, f"{name}: {type(error).__name__}: {error}")


def _handler(
    service: ServiceDescriptor, method: MethodDescriptor, impl: Callable[..., Any]
) -> "grpc.RpcMethodHandler[Any, Any]":
    name = f"{service.name}.{method.name}"
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)

    def span_for(context: grpc.ServicerContext) -> Span:
        parent = None
        for key, value in context.invocation_metadata():
            if key == TRACEPARENT_KEY and isinstance(value, str):
                parent = value
        return Span(name, "containerd-py", parent)

    if method.server_streaming:

        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with span_for(context) as span:
                try:
                    yield from impl(request, Call(context, span))
                except grpc.RpcError:
                    raise
                except Exception as e:
                    span.attrs["error"] = str(e)
                    _abort(context, e, name)

        if method.client_streaming:
            return grpc.stream_stream_rpc_method_handler(
                stream, request_cls.FromString, response_cls.SerializeToString
            )
        return grpc.unary_stream_rpc_method_handler(
            stream, request_cls.FromString, response_cls.SerializeToString
        )

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        with span_for(context) as span:
            try:
                return impl(request, Call(context, span))
            except grpc.RpcError:
                raise
            except Exception as e:
                span.attrs["error"] = str(e)
                _abort(context, e, name)

    if method.client_streaming:
        return grpc.stream_unary_rpc_method_handler(
            unary, request_cls.FromString, response_cls.SerializeToString
        )
    return grpc.unary_unary_rpc_method_handler(
        unary, request_cls.FromString, response_cls.SerializeToString
    )


def bind(service: ServiceDescriptor, impl: object) -> grpc.GenericRpcHandler:
    """A handler routing every method of `service` to `impl.<Method>(request, call)`;
    methods `impl` lacks answer UNIMPLEMENTED (grpcio's default for unknown methods)."""
    handlers = {
        method.name: _handler(service, method, getattr(impl, method.name))
        for method in service.methods
        if hasattr(impl, method.name)
    }
    return grpc.method_handlers_generic_handler(service.full_name, handlers)
