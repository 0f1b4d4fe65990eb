"""containerd.services.content.v1.Content: blobs by digest, and the ingests that write them."""

from collections.abc import Iterator

from google.protobuf import empty_pb2

from containerd_py.api.events import content_pb2 as events
from containerd_py.api.services.content.v1 import content_pb2 as api
from containerd_py.errdefs import AlreadyExists, InvalidArgument, OutOfRange
from containerd_py.exchange import Exchange
from containerd_py.metadata.content import Content, Info, Status
from containerd_py.metadata.gc import Collector
from containerd_py.rpc import Call
from containerd_py.services.convert import timestamp

READ_CHUNK = 1 << 20  # like containerd's 1 MiB read buffer
LIST_BATCH = 100  # infos per List message, as containerd batches them


def info_to_proto(info: Info) -> api.Info:
    return api.Info(
        digest=info.digest,
        size=info.size,
        created_at=timestamp(info.created_at),
        updated_at=timestamp(info.updated_at),
        labels=info.labels,
    )


def status_to_proto(st: Status) -> api.Status:
    return api.Status(
        started_at=timestamp(st.started_at),
        updated_at=timestamp(st.updated_at),
        ref=st.ref,
        offset=st.offset,
        total=st.total,
        expected=st.expected,
    )


class ContentService:
    def __init__(self, content: Content, exchange: Exchange, collector: Collector) -> None:
        self.content = content
        self.exchange = exchange
        self.collector = collector

    def Info(self, request: api.InfoRequest, call: Call) -> api.InfoResponse:
        _check_digest(request.digest)
        return api.InfoResponse(
            info=info_to_proto(self.content.info(call.namespace, request.digest))
        )

    def Update(self, request: api.UpdateRequest, call: Call) -> api.UpdateResponse:
        _check_digest(request.info.digest)
        info = Info(request.info.digest, request.info.size, dict(request.info.labels))
        updated = self.content.update(call.namespace, info, list(request.update_mask.paths))
        return api.UpdateResponse(info=info_to_proto(updated))

    def List(
        self, request: api.ListContentRequest, call: Call
    ) -> Iterator[api.ListContentResponse]:
        batch: list[api.Info] = []
        for info in self.content.walk(call.namespace, list(request.filters)):
            batch.append(info_to_proto(info))
            if len(batch) == LIST_BATCH:
                yield api.ListContentResponse(info=batch)
                batch = []
        if batch:
            yield api.ListContentResponse(info=batch)

    def Delete(self, request: api.DeleteContentRequest, call: Call) -> empty_pb2.Empty:
        _check_digest(request.digest)
        ns = call.namespace
        self.content.delete(ns, request.digest)
        self.collector.collect()
        self.exchange.publish(ns, "/content/delete", events.ContentDelete(digest=request.digest))
        return empty_pb2.Empty()

    def Read(
        self, request: api.ReadContentRequest, call: Call
    ) -> Iterator[api.ReadContentResponse]:
        _check_digest(request.digest)
        ns = call.namespace
        info = self.content.info(ns, request.digest)
        offset = max(request.offset, 0)
        if offset > info.size:
            raise OutOfRange(f"read past object length {info.size} bytes")
        size = request.size
        if size <= 0 or offset + size > info.size:
            size = info.size - offset
        with open(self.content.check_access(ns, request.digest), "rb") as f:
            f.seek(offset)
            end = offset + size
            while offset < end and call.active():
                data = f.read(min(READ_CHUNK, end - offset))
                if not data:
                    break
                yield api.ReadContentResponse(offset=offset, data=data)
                offset += len(data)

    def Status(self, request: api.StatusRequest, call: Call) -> api.StatusResponse:
        return api.StatusResponse(
            status=status_to_proto(self.content.status(call.namespace, request.ref))
        )

    def ListStatuses(
        self, request: api.ListStatusesRequest, call: Call
    ) -> api.ListStatusesResponse:
        statuses = self.content.list_statuses(call.namespace, list(request.filters))
        return api.ListStatusesResponse(statuses=[status_to_proto(s) for s in statuses])

    def Abort(self, request: api.AbortRequest, call: Call) -> empty_pb2.Empty:
        self.content.abort(call.namespace, request.ref)
        return empty_pb2.Empty()

    def Write(
        self, requests: Iterator[api.WriteContentRequest], call: Call
    ) -> Iterator[api.WriteContentResponse]:
        """containerd's write protocol: the first message names the ingest; each message is
        answered with the writer's status; COMMIT verifies and ends the stream."""
        ns = call.namespace
        request = next(requests, None)
        if request is None:
            return
        if not request.ref:
            raise InvalidArgument("first message must have a reference")
        ref, total, expected = request.ref, request.total, request.expected
        call.span.attrs["ref"] = ref
        writer = self.content.writer(ns, ref, total, expected, call.lease)
        try:
            while True:
                st = writer.status()
                response = api.WriteContentResponse(action=request.action, offset=st.offset)
                if request.expected:
                    expected = request.expected
                    if self.content.exists(ns, expected):
                        writer.close()
                        self.content.abort(ns, ref)
                        raise AlreadyExists(f"blob with expected digest {expected} exists")
                if request.total > 0:
                    total = request.total
                if request.action == api.STAT:
                    response.digest = writer.digest()
                    response.started_at.CopyFrom(timestamp(st.started_at))
                    response.updated_at.CopyFrom(timestamp(st.updated_at))
                    response.total = total
                else:
                    if request.offset > 0 and request.offset != st.offset:
                        raise OutOfRange(
                            f"write @{request.offset} must occur at current offset {st.offset}"
                        )
                    if request.offset == 0 and st.offset > 0:
                        writer.truncate(0)
                        response.offset = 0
                    if request.data:
                        writer.write(request.data)
                        response.offset += len(request.data)
                    if request.action == api.COMMIT:
                        response.digest = writer.commit(total, expected, dict(request.labels))
                        yield response
                        return
                    response.digest = writer.digest()
                yield response
                request = next(requests, None)
                if request is None:
                    return
        finally:
            writer.close()


def _check_digest(digest: str) -> None:
    algorithm, _, encoded = digest.partition(":")
    if not algorithm or not encoded:
        raise InvalidArgument(f"{digest}: invalid checksum digest format")
