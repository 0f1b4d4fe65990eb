"""containerd-py's Containers: the store's rules as containerd 1.6's metadata/containers.go
has them (validation, update masks, not-found forms, namespaces, the collector keeping a
container's snapshot), then the gRPC service on a unix socket, driven by our client."""

import hashlib
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, field_mask_pb2

from containerd_py.api.events import container_pb2 as events_pb2
from containerd_py.api.services.containers.v1 import containers_pb2 as api
from containerd_py.api.services.events.v1 import events_pb2 as events_api
from containerd_py.client.client import Client
from containerd_py.client.services import Stub
from containerd_py.content.local import LocalStore
from containerd_py.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from containerd_py.exchange import Exchange, Subscription
from containerd_py.metadata.containers import Containers
from containerd_py.metadata.content import Content
from containerd_py.metadata.db import DB
from containerd_py.metadata.gc import Collector
from containerd_py.metadata.namespaces import Namespaces
from containerd_py.metadata.snapshots import NamespacedSnapshotter
from containerd_py.rpc import bind
from containerd_py.services.containers import ContainersService
from containerd_py.services.events import EventsService
from containerd_py.snapshots import NativeSnapshotter

RUNC = "io.containerd.runc.v2"
SPEC = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Spec", value=b"{}")


class Stack:
    def __init__(self, root: Path) -> None:
        self.db = DB(str(root / "meta.db"))
        self.store = LocalStore(str(root / "content"))
        self.backend = NativeSnapshotter(str(root / "native"))
        self.collector = Collector(self.db, self.store, {"native": self.backend})
        self.content = Content(self.db, self.store)
        self.snapshots = NamespacedSnapshotter(self.db, "native", self.backend)
        self.containers = Containers(self.db)
        self.namespaces = Namespaces(self.db)

    def blob(self, ns: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        writer = self.content.writer(ns, f"ref-{digest}", len(data), digest, None)
        writer.write(data)
        writer.commit(len(data), digest, {})
        writer.close()
        return digest

    def close(self) -> None:
        self.backend.close()
        self.db.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    yield s
    s.close()


def container(cid: str = "web", **fields: Any) -> api.Container:
    """A valid record (runc runtime, a spec) with `fields` set or overridden."""
    fields = {"spec": SPEC, **fields}
    return api.Container(id=cid, runtime=api.Container.Runtime(name=RUNC), **fields)


# -- the store


def test_create_and_get_round_trip_every_field(stack: Stack) -> None:
    options = any_pb2.Any(type_url="containerd.runc.v1.Options", value=b"\x08\x01")
    wanted = api.Container(
        id="web",
        labels={"app": "web", "dropped": ""},
        image="docker.io/library/busybox:latest",
        runtime=api.Container.Runtime(name=RUNC, options=options),
        spec=SPEC,
        snapshotter="native",
        snapshot_key="web-rootfs",
        extensions={"ext": any_pb2.Any(type_url="x", value=b"1")},
    )
    created = stack.containers.create("ns", wanted)
    assert created.created_at.ToNanoseconds() == created.updated_at.ToNanoseconds() > 0
    assert not wanted.HasField("created_at")  # the caller's message is left alone
    assert dict(created.labels) == {"app": "web"}  # an empty value is not a label
    got = stack.containers.get("ns", "web")
    assert got == created
    assert got.runtime.options == options and got.extensions["ext"].value == b"1"
    with pytest.raises(AlreadyExists, match=r'^container "web"$'):
        stack.containers.create("ns", container("web"))


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (container(""), "container.ID: identifier must not be empty"),
        (
            container("a/b"),
            'container.ID: identifier "a/b" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$',
        ),
        (
            container(extensions={"": any_pb2.Any()}),
            "container.Extension keys must not be zero-length",
        ),
        (
            container(labels={"k" * 20: "v" * 4096}),
            "containers.Labels: label key and value greater than maximum size (4096 bytes), "
            "key: kkkkkkkkkk",
        ),
        (api.Container(id="web", spec=SPEC), "container.Runtime.Name must be set"),
        (
            api.Container(id="web", runtime=api.Container.Runtime(name=RUNC)),
            "container.Spec must be set",
        ),
        (
            container(snapshot_key="rootfs"),
            "container.Snapshotter must be set if container.SnapshotKey is set",
        ),
    ],
)
def test_create_validation(stack: Stack, record: api.Container, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        stack.containers.create("ns", record)
    assert str(e.value) == f"create container failed validation: {message}"


def test_namespaces_are_created_on_use_isolated_and_not_deleted_while_used(stack: Stack) -> None:
    stack.containers.create("one", container("web", image="a"))
    stack.containers.create("two", container("web", image="b"))
    assert [name for name, _ in stack.namespaces.list()] == ["one", "two"]
    assert stack.containers.get("two", "web").image == "b"
    with pytest.raises(NotFound) as e:
        stack.containers.get("three", "web")
    assert str(e.value) == 'container "web" in namespace "three"'
    with pytest.raises(FailedPrecondition, match="still has containers"):
        stack.namespaces.delete("one")
    stack.containers.delete("one", "web")
    stack.namespaces.delete("one")
    assert [c.id for c in stack.containers.list("two")] == ["web"]


@pytest.mark.parametrize(
    ("filters", "ids"),
    [
        ((), ["a", "b", "c"]),
        (("id==b",), ["b"]),
        (("image",), ["a", "b"]),  # an empty image is absent
        (('image=="busybox"',), ["a"]),
        (("runtime.name==io.containerd.runpy.v2",), ["b"]),
        (("labels.app==web",), ["a", "c"]),
        (('labels."io.x"==1',), ["c"]),
        (("labels.app==web,id!=a",), ["c"]),  # AND within a filter
        (("id==a", "id==b"), ["a", "b"]),  # OR across filters
        (("runtime",), []),
    ],
)
def test_list_filters(stack: Stack, filters: Sequence[str], ids: list[str]) -> None:
    stack.containers.create("ns", container("c", labels={"app": "web", "io.x": "1"}))
    stack.containers.create("ns", container("a", image="busybox", labels={"app": "web"}))
    b = container("b", image="alpine")
    b.runtime.name = "io.containerd.runpy.v2"
    stack.containers.create("ns", b)
    assert [c.id for c in stack.containers.list("ns", filters)] == ids


def test_list_refuses_a_bad_filter(stack: Stack) -> None:
    with pytest.raises(InvalidArgument, match="filters: parse error"):
        stack.containers.list("ns", ["id=="])


def test_update_by_fieldpath(stack: Stack) -> None:
    created = stack.containers.create(
        "ns",
        container(
            labels={"keep": "1", "drop": "1"},
            image="old",
            snapshotter="native",
            snapshot_key="k1",
            extensions={"a": any_pb2.Any(type_url="a")},
        ),
    )
    change = container(
        labels={"new": "2", "keep": "changed"},
        image="new",
        snapshot_key="k2",
        spec=any_pb2.Any(type_url="spec2"),
        extensions={"b": any_pb2.Any(type_url="b")},
    )
    updated = stack.containers.update(
        "ns", change, ["labels.new", "labels.drop", "image", "extensions.b"]
    )
    assert dict(updated.labels) == {"keep": "1", "new": "2"}
    assert updated.image == "new" and updated.snapshot_key == "k1" and updated.spec == SPEC
    assert set(updated.extensions) == {"a", "b"}
    assert updated.created_at == created.created_at
    assert updated.updated_at.ToNanoseconds() > created.updated_at.ToNanoseconds()
    assert stack.containers.get("ns", "web") == updated

    updated = stack.containers.update("ns", change, ["labels", "spec", "snapshotkey"])
    assert dict(updated.labels) == {"new": "2", "keep": "changed"}
    assert updated.spec.type_url == "spec2" and updated.snapshot_key == "k2"
    # 1.6 never removes an extension: `extensions` merges, a missing key stores an empty Any.
    updated = stack.containers.update("ns", container(), ["extensions", "extensions.c"])
    assert set(updated.extensions) == {"a", "b", "c"} and updated.extensions["c"] == any_pb2.Any()


def test_update_without_fieldpaths_replaces_the_mutable_fields(stack: Stack) -> None:
    stack.containers.create(
        "ns", container(labels={"a": "1"}, image="old", snapshotter="native", snapshot_key="k1")
    )
    replace = container(labels={"b": "2"}, snapshotter="native", spec=any_pb2.Any(type_url="s"))
    replace.runtime.options.type_url = "ignored"  # runtime options are never updated
    updated = stack.containers.update("ns", replace, [])
    assert dict(updated.labels) == {"b": "2"}
    assert updated.image == "" and updated.snapshot_key == "" and updated.spec.type_url == "s"
    assert not updated.runtime.HasField("options")

    with pytest.raises(InvalidArgument) as e:
        stack.containers.update("ns", container(snapshotter="overlayfs"), [])
    assert str(e.value) == "container.Snapshotter field is immutable"
    other = container(snapshotter="native")
    other.runtime.name = "io.containerd.runpy.v2"
    with pytest.raises(InvalidArgument) as e:
        stack.containers.update("ns", other, [])
    assert str(e.value) == "container.Runtime.Name field is immutable"


@pytest.mark.parametrize(
    ("fieldpaths", "message"),
    [
        (["runtime"], 'cannot update "runtime" field on "web"'),
        (["snapshotter"], 'cannot update "snapshotter" field on "web"'),
        (["spec"], "update failed validation: container.Spec must be set"),
        (
            ["snapshotkey"],
            "update failed validation: "
            "container.Snapshotter must be set if container.SnapshotKey is set",
        ),
    ],
)
def test_update_refusals(stack: Stack, fieldpaths: list[str], message: str) -> None:
    stack.containers.create("ns", container())
    change = api.Container(id="web", snapshot_key="rootfs")
    with pytest.raises(InvalidArgument) as e:
        stack.containers.update("ns", change, fieldpaths)
    assert str(e.value) == message
    assert stack.containers.get("ns", "web").snapshot_key == ""  # nothing was written


def test_update_and_delete_of_missing_containers(stack: Stack) -> None:
    with pytest.raises(InvalidArgument, match=r"^must specify a container id$"):
        stack.containers.update("ns", api.Container(), [])
    # A namespace without any container is named, as containerd names one without its bucket.
    with pytest.raises(NotFound) as e:
        stack.containers.update("ns", container("ghost"), [])
    assert str(e.value) == 'cannot update container "ghost" in namespace "ns"'
    with pytest.raises(NotFound) as e:
        stack.containers.delete("ns", "ghost")
    assert str(e.value) == 'cannot delete container "ghost" in namespace "ns"'
    stack.containers.create("ns", container("web"))
    with pytest.raises(NotFound) as e:
        stack.containers.update("ns", container("ghost"), [])
    assert str(e.value) == 'container "ghost"'
    with pytest.raises(NotFound) as e:
        stack.containers.delete("ns", "ghost")
    assert str(e.value) == "container ghost"
    stack.containers.delete("ns", "web")
    with pytest.raises(NotFound):
        stack.containers.get("ns", "web")


def test_collector_keeps_a_containers_snapshot_and_labelled_content(stack: Stack) -> None:
    stack.snapshots.prepare("ns", "base-work", "", {}, None)
    stack.snapshots.commit("ns", "base", "base-work", {}, None)
    stack.snapshots.prepare("ns", "web-rootfs", "base", {}, None)
    blob = stack.blob("ns", b"checkpoint")
    stack.containers.create(
        "ns",
        container(
            snapshotter="native",
            snapshot_key="web-rootfs",
            labels={"containerd.io/gc.ref.content.cp": blob},
        ),
    )
    stack.collector.collect()
    assert sorted(i.name for i in stack.snapshots.walk("ns")) == ["base", "web-rootfs"]
    assert [i.digest for i in stack.content.walk("ns")] == [blob]

    stack.containers.delete("ns", "web")
    stack.collector.collect()
    assert list(stack.backend.walk()) == [] and list(stack.store.walk()) == []


# -- the service, over a unix socket


class WatchedExchange(Exchange):
    """Tells the test when Events.Subscribe has registered, so nothing is published before."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribed = threading.Event()

    def subscribe(self, filter_strings: Sequence[str]) -> Subscription:
        subscription = super().subscribe(filter_strings)
        self.subscribed.set()
        return subscription


class Served:
    def __init__(self, stack: Stack, client: Client, exchange: WatchedExchange) -> None:
        self.stack = stack
        self.client = client
        self.exchange = exchange
        self.containers = Stub(
            client.channel, api.DESCRIPTOR.services_by_name["Containers"], client.metadata
        )


@pytest.fixture
def served(stack: Stack, tmp_path: Path) -> Iterator[Served]:
    exchange = WatchedExchange()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        handlers=[
            bind(
                api.DESCRIPTOR.services_by_name["Containers"],
                ContainersService(stack.containers, exchange, stack.collector),
            ),
            bind(events_api.DESCRIPTOR.services_by_name["Events"], EventsService(exchange)),
        ],
    )
    socket = tmp_path / "c.sock"
    server.add_insecure_port(f"unix:{socket}")
    server.start()
    client = Client(str(socket), "ns")
    yield Served(stack, client, exchange)
    client.close()
    server.stop(grace=None).wait()


def test_service_round_trip_and_errors(served: Served) -> None:
    stub = served.containers
    record = container(image="busybox", labels={"app": "web"})
    created = stub.Create(api.CreateContainerRequest(container=record)).container
    assert created.id == "web" and created.HasField("created_at")
    assert stub.Get(api.GetContainerRequest(id="web")).container == created
    stub.Create(api.CreateContainerRequest(container=container("db")))
    listed = stub.List(api.ListContainersRequest(filters=["labels.app==web"])).containers
    assert [c.id for c in listed] == ["web"]
    streamed = [m.container.id for m in stub.ListStream(api.ListContainersRequest())]
    assert streamed == ["db", "web"]

    mask = field_mask_pb2.FieldMask(paths=["labels.app"])
    request = api.UpdateContainerRequest(container=container("web"), update_mask=mask)
    assert dict(stub.Update(request).container.labels) == {}

    with pytest.raises(AlreadyExists) as exists:
        stub.Create(api.CreateContainerRequest(container=record))
    assert str(exists.value) == 'container "web": already exists'
    with pytest.raises(NotFound) as missing:
        stub.Get(api.GetContainerRequest(id="ghost"))
    assert str(missing.value) == 'container "ghost" in namespace "ns": not found'
    with pytest.raises(InvalidArgument) as invalid:
        stub.Update(api.UpdateContainerRequest(container=api.Container()))
    assert str(invalid.value) == "Container.ID required: invalid argument"
    with pytest.raises(InvalidArgument, match=r"^filters: parse error"):
        list(stub.ListStream(api.ListContainersRequest(filters=["id=="])))


def test_service_events_and_delete_collects_the_snapshot(served: Served) -> None:
    stack, stub = served.stack, served.containers
    stack.snapshots.prepare("ns", "web-rootfs", "", {}, None)
    seen: queue.Queue[events_api.Envelope] = queue.Queue()
    stream = served.client.events.Subscribe(
        events_api.SubscribeRequest(filters=['topic~="^/containers/"'])
    )

    def pump() -> None:
        for envelope in stream:
            seen.put(envelope)

    threading.Thread(target=pump, daemon=True).start()
    assert served.exchange.subscribed.wait(5)

    record = container(image="busybox", snapshotter="native", snapshot_key="web-rootfs")
    record.runtime.options.type_url = "containerd.runc.v1.Options"
    stub.Create(api.CreateContainerRequest(container=record))
    update = container(labels={"a": "1"})
    mask = field_mask_pb2.FieldMask(paths=["labels"])
    stub.Update(api.UpdateContainerRequest(container=update, update_mask=mask))
    stub.Delete(api.DeleteContainerRequest(id="web"))
    try:
        got = [seen.get(timeout=5) for _ in range(3)]
    finally:
        stream.cancel()

    assert [(e.namespace, e.topic) for e in got] == [
        ("ns", "/containers/create"),
        ("ns", "/containers/update"),
        ("ns", "/containers/delete"),
    ]
    assert got[0].event.type_url == "containerd.events.ContainerCreate"
    create = events_pb2.ContainerCreate.FromString(got[0].event.value)
    assert (create.id, create.image, create.runtime.name) == ("web", "busybox", RUNC)
    assert create.runtime.options.type_url == "containerd.runc.v1.Options"
    update_event = events_pb2.ContainerUpdate.FromString(got[1].event.value)
    assert dict(update_event.labels) == {"a": "1"}
    assert update_event.snapshot_key == "web-rootfs" and update_event.image == "busybox"
    assert events_pb2.ContainerDelete.FromString(got[2].event.value).id == "web"

    assert list(stack.backend.walk()) == []  # collected before Delete returned
    with pytest.raises(NotFound) as e:
        stub.Delete(api.DeleteContainerRequest(id="web"))
    assert str(e.value) == 'cannot delete container "web" in namespace "ns": not found'
