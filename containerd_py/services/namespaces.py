"""containerd.services.namespaces.v1.Namespaces."""

from google.protobuf import empty_pb2

from containerd_py.api.events import namespace_pb2 as events
from containerd_py.api.services.namespaces.v1 import namespace_pb2 as api
from containerd_py.exchange import Exchange
from containerd_py.metadata.namespaces import Namespaces
from containerd_py.rpc import Call


class NamespacesService:
    def __init__(self, namespaces: Namespaces, exchange: Exchange) -> None:
        self.namespaces = namespaces
        self.exchange = exchange

    def Get(self, request: api.GetNamespaceRequest, call: Call) -> api.GetNamespaceResponse:
        labels = self.namespaces.get(request.name)
        return api.GetNamespaceResponse(namespace=api.Namespace(name=request.name, labels=labels))

    def List(self, request: api.ListNamespacesRequest, call: Call) -> api.ListNamespacesResponse:
        return api.ListNamespacesResponse(
            namespaces=[
                api.Namespace(name=name, labels=labels) for name, labels in self.namespaces.list()
            ]
        )

    def Create(
        self, request: api.CreateNamespaceRequest, call: Call
    ) -> api.CreateNamespaceResponse:
        ns = request.namespace
        self.namespaces.create(ns.name, dict(ns.labels))
        self.exchange.publish(
            ns.name, "/namespaces/create", events.NamespaceCreate(name=ns.name, labels=ns.labels)
        )
        return api.CreateNamespaceResponse(namespace=ns)

    def Update(
        self, request: api.UpdateNamespaceRequest, call: Call
    ) -> api.UpdateNamespaceResponse:
        ns = request.namespace
        paths = list(request.update_mask.paths)
        labels = self.namespaces.update(ns.name, dict(ns.labels), paths)
        self.exchange.publish(
            ns.name, "/namespaces/update", events.NamespaceUpdate(name=ns.name, labels=labels)
        )
        return api.UpdateNamespaceResponse(namespace=api.Namespace(name=ns.name, labels=labels))

    def Delete(self, request: api.DeleteNamespaceRequest, call: Call) -> empty_pb2.Empty:
        self.namespaces.delete(request.name)
        self.exchange.publish(
            request.name, "/namespaces/delete", events.NamespaceDelete(name=request.name)
        )
        return empty_pb2.Empty()
