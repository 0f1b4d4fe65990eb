"""containerd.services.events.v1.Events: Publish from clients, Forward from shims (through
`containerd-py publish`), Subscribe for `ctr events` and Tasks.Wait-like watchers."""

from collections.abc import Iterator

from google.protobuf import empty_pb2, timestamp_pb2

from containerd_py.api.services.events.v1 import events_pb2 as api
from containerd_py.errdefs import InvalidArgument
from containerd_py.exchange import Exchange
from containerd_py.rpc import Call


class EventsService:
    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    def Publish(self, request: api.PublishRequest, call: Call) -> empty_pb2.Empty:
        if not request.HasField("event"):
            raise InvalidArgument("event must not be empty")
        timestamp = timestamp_pb2.Timestamp()
        timestamp.GetCurrentTime()
        self.exchange.forward(
            api.Envelope(
                timestamp=timestamp,
                namespace=call.namespace,
                topic=request.topic,
                event=request.event,
            )
        )
        return empty_pb2.Empty()

    def Forward(self, request: api.ForwardRequest, call: Call) -> empty_pb2.Empty:
        self.exchange.forward(request.envelope)
        return empty_pb2.Empty()

    def Subscribe(self, request: api.SubscribeRequest, call: Call) -> Iterator[api.Envelope]:
        subscription = self.exchange.subscribe(list(request.filters))
        yield from self.exchange.stream(subscription, call.active)
