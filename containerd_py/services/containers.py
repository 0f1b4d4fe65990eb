"""containerd.services.containers.v1.Containers: the records `ctr containers` and a task's
create read (containerd 1.6 services/containers/local.go). A delete runs the collector before
it returns, so a rootfs snapshot nothing else holds goes with its container."""

from collections.abc import Iterator

from google.protobuf import empty_pb2

from containerd_py.api.events import container_pb2 as events
from containerd_py.api.services.containers.v1 import containers_pb2 as api
from containerd_py.errdefs import InvalidArgument
from containerd_py.exchange import Exchange
from containerd_py.metadata.containers import Containers
from containerd_py.metadata.gc import Collector
from containerd_py.rpc import Call


class ContainersService:
    def __init__(
        self,
        containers: Containers,
        exchange: Exchange,
        collector: Collector,
        default_runtime: str = "",
    ) -> None:
        self.containers = containers
        self.exchange = exchange
        self.collector = collector
        # containerd refuses a container without a runtime name; containerd-py gives it the
        # configured default instead (ours, unless the config says otherwise).
        self.default_runtime = default_runtime

    def Get(self, request: api.GetContainerRequest, call: Call) -> api.GetContainerResponse:
        return api.GetContainerResponse(container=self.containers.get(call.namespace, request.id))

    def List(self, request: api.ListContainersRequest, call: Call) -> api.ListContainersResponse:
        found = self.containers.list(call.namespace, list(request.filters))
        return api.ListContainersResponse(containers=found)

    def ListStream(
        self, request: api.ListContainersRequest, call: Call
    ) -> Iterator[api.ListContainerMessage]:
        # Read all before sending, as containerd does: one consistent view of the store.
        for container in self.containers.list(call.namespace, list(request.filters)):
            yield api.ListContainerMessage(container=container)

    def Create(
        self, request: api.CreateContainerRequest, call: Call
    ) -> api.CreateContainerResponse:
        ns = call.namespace
        if not request.container.runtime.name and self.default_runtime:
            request.container.runtime.name = self.default_runtime
        container = self.containers.create(ns, request.container)
        runtime = events.ContainerCreate.Runtime(name=container.runtime.name)
        if container.runtime.HasField("options"):
            runtime.options.CopyFrom(container.runtime.options)
        self.exchange.publish(
            ns,
            "/containers/create",
            events.ContainerCreate(id=container.id, image=container.image, runtime=runtime),
        )
        return api.CreateContainerResponse(container=container)

    def Update(
        self, request: api.UpdateContainerRequest, call: Call
    ) -> api.UpdateContainerResponse:
        if not request.container.id:
            raise InvalidArgument("Container.ID required")
        ns = call.namespace
        paths = list(request.update_mask.paths)
        container = self.containers.update(ns, request.container, paths)
        self.exchange.publish(
            ns,
            "/containers/update",
            events.ContainerUpdate(
                id=container.id,
                image=container.image,
                labels=container.labels,
                snapshot_key=container.snapshot_key,
            ),
        )
        return api.UpdateContainerResponse(container=container)

    def Delete(self, request: api.DeleteContainerRequest, call: Call) -> empty_pb2.Empty:
        ns = call.namespace
        self.containers.delete(ns, request.id)
        self.exchange.publish(ns, "/containers/delete", events.ContainerDelete(id=request.id))
        # Synchronous, like images' delete: the rootfs snapshot goes when the container does.
        self.collector.collect()
        return empty_pb2.Empty()
