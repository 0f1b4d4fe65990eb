"""containerd.services.snapshots.v1.Snapshots, for each configured snapshotter."""

from collections.abc import Iterator

from google.protobuf import empty_pb2

from containerd_py.api.events import snapshot_pb2 as events
from containerd_py.api.services.snapshots.v1 import snapshots_pb2 as api
from containerd_py.errdefs import InvalidArgument, NotFound
from containerd_py.exchange import Exchange
from containerd_py.metadata.gc import Collector
from containerd_py.metadata.snapshots import Info, NamespacedSnapshotter
from containerd_py.rpc import Call
from containerd_py.services.convert import mounts_to_proto, timestamp
from containerd_py.snapshots import Kind

LIST_BATCH = 100


def info_to_proto(info: Info) -> api.Info:
    return api.Info(
        name=info.name,
        parent=info.parent,
        kind=int(info.kind),  # type: ignore[arg-type]
        created_at=timestamp(info.created_at),
        updated_at=timestamp(info.updated_at),
        labels=info.labels,
    )


class SnapshotsService:
    def __init__(
        self,
        snapshotters: dict[str, NamespacedSnapshotter],
        exchange: Exchange,
        collector: Collector,
    ) -> None:
        self.snapshotters = snapshotters
        self.exchange = exchange
        self.collector = collector

    def _get(self, name: str) -> NamespacedSnapshotter:
        if not name:
            raise InvalidArgument("snapshotter argument missing")
        try:
            return self.snapshotters[name]
        except KeyError:
            raise NotFound(f"snapshotter not loaded: {name}") from None

    def Prepare(
        self, request: api.PrepareSnapshotRequest, call: Call
    ) -> api.PrepareSnapshotResponse:
        sn, ns = self._get(request.snapshotter), call.namespace
        mounts = sn.prepare(ns, request.key, request.parent, dict(request.labels), call.lease)
        self.exchange.publish(
            ns,
            "/snapshot/prepare",
            events.SnapshotPrepare(key=request.key, parent=request.parent),
        )
        return api.PrepareSnapshotResponse(mounts=mounts_to_proto(mounts))

    def View(self, request: api.ViewSnapshotRequest, call: Call) -> api.ViewSnapshotResponse:
        sn, ns = self._get(request.snapshotter), call.namespace
        mounts = sn.view(ns, request.key, request.parent, dict(request.labels), call.lease)
        return api.ViewSnapshotResponse(mounts=mounts_to_proto(mounts))

    def Mounts(self, request: api.MountsRequest, call: Call) -> api.MountsResponse:
        mounts = self._get(request.snapshotter).mounts(call.namespace, request.key)
        return api.MountsResponse(mounts=mounts_to_proto(mounts))

    def Commit(self, request: api.CommitSnapshotRequest, call: Call) -> empty_pb2.Empty:
        sn, ns = self._get(request.snapshotter), call.namespace
        sn.commit(ns, request.name, request.key, dict(request.labels), call.lease)
        self.exchange.publish(
            ns, "/snapshot/commit", events.SnapshotCommit(key=request.key, name=request.name)
        )
        return empty_pb2.Empty()

    def Remove(self, request: api.RemoveSnapshotRequest, call: Call) -> empty_pb2.Empty:
        sn, ns = self._get(request.snapshotter), call.namespace
        sn.remove(ns, request.key)
        self.collector.collect()
        self.exchange.publish(ns, "/snapshot/remove", events.SnapshotRemove(key=request.key))
        return empty_pb2.Empty()

    def Stat(self, request: api.StatSnapshotRequest, call: Call) -> api.StatSnapshotResponse:
        info = self._get(request.snapshotter).stat(call.namespace, request.key)
        return api.StatSnapshotResponse(info=info_to_proto(info))

    def Update(self, request: api.UpdateSnapshotRequest, call: Call) -> api.UpdateSnapshotResponse:
        sn = self._get(request.snapshotter)
        wanted = Info(request.info.name, "", Kind.UNKNOWN, dict(request.info.labels))
        info = sn.update(call.namespace, wanted, list(request.update_mask.paths))
        return api.UpdateSnapshotResponse(info=info_to_proto(info))

    def List(
        self, request: api.ListSnapshotsRequest, call: Call
    ) -> Iterator[api.ListSnapshotsResponse]:
        batch: list[api.Info] = []
        for info in self._get(request.snapshotter).walk(call.namespace, list(request.filters)):
            batch.append(info_to_proto(info))
            if len(batch) == LIST_BATCH:
                yield api.ListSnapshotsResponse(info=batch)
                batch = []
        if batch:
            yield api.ListSnapshotsResponse(info=batch)

    def Usage(self, request: api.UsageRequest, call: Call) -> api.UsageResponse:
        usage = self._get(request.snapshotter).usage(call.namespace, request.key)
        return api.UsageResponse(size=usage.size, inodes=usage.inodes)

    def Cleanup(self, request: api.CleanupRequest, call: Call) -> empty_pb2.Empty:
        self._get(request.snapshotter)
        self.collector.collect()
        return empty_pb2.Empty()
