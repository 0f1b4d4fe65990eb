"""The event exchange: every event published in the daemon or forwarded by a shim goes to every
subscriber whose filters match, as containerd's events/exchange does. Subscribers that do not
keep up get their queue cut at a bound rather than growing the daemon without limit."""

import queue
import threading
from collections.abc import Callable, Iterator, Sequence

from google.protobuf import any_pb2, message, timestamp_pb2

from containerd_py import filters
from containerd_py.api.services.events.v1 import events_pb2
from containerd_py.errdefs import InvalidArgument
from containerd_py.metadata.identifiers import validate

QUEUE_BOUND = 4096


def validate_topic(topic: str) -> None:
    if not topic:
        raise InvalidArgument("must not be empty")
    if topic[0] != "/":
        raise InvalidArgument("must start with '/'")
    if len(topic) == 1:
        raise InvalidArgument("must have at least one component")
    for component in topic[1:].split("/"):
        try:
            validate(component)
        except InvalidArgument as e:
            raise InvalidArgument(f'failed validation on component "{component}": {e}') from None


def pack(event: message.Message) -> any_pb2.Any:
    """An event in an Any named as containerd 1.6 names it: the bare full name."""
    return any_pb2.Any(type_url=event.DESCRIPTOR.full_name, value=event.SerializeToString())


def _adaptor(envelope: events_pb2.Envelope) -> filters.Adaptor:
    def adapt(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        if path[0] == "namespace":
            return envelope.namespace, True
        if path[0] == "topic":
            return envelope.topic, True
        return "", False

    return adapt


class Subscription:
    def __init__(self, exchange: "Exchange", match: filters.Filter) -> None:
        self.exchange = exchange
        self.match = match
        self.queue: queue.Queue[events_pb2.Envelope | None] = queue.Queue(QUEUE_BOUND)

    def offer(self, envelope: events_pb2.Envelope) -> None:
        if self.match.match(_adaptor(envelope)):
            try:
                self.queue.put_nowait(envelope)
            except queue.Full:
                pass  # a stalled subscriber loses events, it does not stall publishers

    def next(self, timeout: float) -> events_pb2.Envelope | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.exchange.unsubscribe(self)


class Exchange:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []

    def publish(self, namespace: str, topic: str, event: message.Message) -> None:
        validate(namespace)
        validate_topic(topic)
        timestamp = timestamp_pb2.Timestamp()
        timestamp.GetCurrentTime()
        self.forward(
            events_pb2.Envelope(
                timestamp=timestamp, namespace=namespace, topic=topic, event=pack(event)
            )
        )

    def forward(self, envelope: events_pb2.Envelope) -> None:
        validate(envelope.namespace)
        validate_topic(envelope.topic)
        with self._lock:
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            subscription.offer(envelope)

    def subscribe(self, filter_strings: Sequence[str]) -> Subscription:
        try:
            match = filters.parse_all(*filter_strings)
        except InvalidArgument as e:
            raise InvalidArgument(f"failed parsing subscription filters: {e}") from None
        subscription = Subscription(self, match)
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    def stream(
        self, subscription: Subscription, active: Callable[[], bool]
    ) -> Iterator[events_pb2.Envelope]:
        """Envelopes until the subscriber goes away."""
        try:
            while active():
                envelope = subscription.next(0.2)
                if envelope is not None:
                    yield envelope
        finally:
            subscription.close()
