"""containerd.services.leases.v1.Leases."""

from google.protobuf import empty_pb2

from containerd_py.api.services.leases.v1 import leases_pb2 as api
from containerd_py.metadata.gc import Collector
from containerd_py.metadata.leases import Lease, Leases
from containerd_py.rpc import Call
from containerd_py.services.convert import timestamp


def lease_to_proto(lease: Lease) -> api.Lease:
    return api.Lease(id=lease.id, created_at=timestamp(lease.created_at), labels=lease.labels)


class LeasesService:
    def __init__(self, leases: Leases, collector: Collector) -> None:
        self.leases = leases
        self.collector = collector

    def Create(self, request: api.CreateRequest, call: Call) -> api.CreateResponse:
        lease = self.leases.create(call.namespace, request.id, dict(request.labels))
        return api.CreateResponse(lease=lease_to_proto(lease))

    def Delete(self, request: api.DeleteRequest, call: Call) -> empty_pb2.Empty:
        self.leases.delete(call.namespace, request.id)
        self.collector.collect()
        return empty_pb2.Empty()

    def List(self, request: api.ListRequest, call: Call) -> api.ListResponse:
        found = self.leases.find(call.namespace, list(request.filters))
        return api.ListResponse(leases=[lease_to_proto(lease) for lease in found])

    def AddResource(self, request: api.AddResourceRequest, call: Call) -> empty_pb2.Empty:
        r = request.resource
        self.leases.add_resource(call.namespace, request.id, r.type, r.id)
        return empty_pb2.Empty()

    def DeleteResource(self, request: api.DeleteResourceRequest, call: Call) -> empty_pb2.Empty:
        r = request.resource
        self.leases.delete_resource(call.namespace, request.id, r.type, r.id)
        self.collector.collect()
        return empty_pb2.Empty()

    def ListResources(
        self, request: api.ListResourcesRequest, call: Call
    ) -> api.ListResourcesResponse:
        resources = self.leases.list_resources(call.namespace, request.id)
        return api.ListResourcesResponse(
            resources=[api.Resource(id=rid, type=rtype) for rid, rtype in resources]
        )
