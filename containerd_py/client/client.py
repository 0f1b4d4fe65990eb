"""`Client`: containerd's Go client, in Python — a connection to a containerd socket (ours or
the real one) with a namespace, the services as typed stubs, and the workflows built on them
(pull, unpack, import, export, push: see `pull.py`, `archive.py`, `push.py`)."""

import contextlib
import datetime
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping

import grpc
from google.protobuf import empty_pb2, field_mask_pb2

from containerd_py.api.services.containers.v1 import containers_pb2
from containerd_py.api.services.content.v1 import content_pb2
from containerd_py.api.services.diff.v1 import diff_pb2
from containerd_py.api.services.events.v1 import events_pb2
from containerd_py.api.services.images.v1 import images_pb2
from containerd_py.api.services.introspection.v1 import introspection_pb2
from containerd_py.api.services.leases.v1 import leases_pb2
from containerd_py.api.services.namespaces.v1 import namespace_pb2
from containerd_py.api.services.snapshots.v1 import snapshots_pb2
from containerd_py.api.services.tasks.v1 import tasks_pb2
from containerd_py.api.services.version.v1 import version_pb2
from containerd_py.api.types import descriptor_pb2
from containerd_py.client.services import Stream, Stub, error_from
from containerd_py.errdefs import AlreadyExists, FailedPrecondition, NotFound
from shim.api.types import mount_pb2
from stacklab import paths

WRITE_CHUNK = 1 << 20
DEFAULT_NAMESPACE = "default"
DEFAULT_SNAPSHOTTER = "overlayfs"
LEASE_EXPIRY = datetime.timedelta(hours=24)

ProgressFn = Callable[[str, int, int], None]  # (ref, bytes done, total)

_SERVICES = {
    "version": (version_pb2, "Version"),
    "introspection": (introspection_pb2, "Introspection"),
    "namespaces": (namespace_pb2, "Namespaces"),
    "content": (content_pb2, "Content"),
    "images": (images_pb2, "Images"),
    "leases": (leases_pb2, "Leases"),
    "snapshots": (snapshots_pb2, "Snapshots"),
    "diff": (diff_pb2, "Diff"),
    "events": (events_pb2, "Events"),
    "containers": (containers_pb2, "Containers"),
    "tasks": (tasks_pb2, "Tasks"),
}


class Client:
    def __init__(
        self,
        address: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        channel: grpc.Channel | None = None,
        lease: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        self.address = address or paths.containerd_socket()
        self.namespace = namespace
        self.lease = lease
        self.traceparent = traceparent
        self._owns_channel = channel is None
        self.channel = channel or grpc.insecure_channel(
            f"unix:{self.address}",
            options=[
                ("grpc.max_receive_message_length", 16 << 20),
                ("grpc.max_send_message_length", 16 << 20),
            ],
        )
        self.version = self._stub("version")
        self.introspection = self._stub("introspection")
        self.namespaces = self._stub("namespaces")
        self.content = self._stub("content")
        self.images = self._stub("images")
        self.leases = self._stub("leases")
        self.snapshots = self._stub("snapshots")
        self.diff = self._stub("diff")
        self.events = self._stub("events")
        self.containers = self._stub("containers")
        self.tasks = self._stub("tasks")

    def _stub(self, name: str) -> Stub:
        module, service = _SERVICES[name]
        return Stub(self.channel, module.DESCRIPTOR.services_by_name[service], self.metadata)

    def metadata(self) -> list[tuple[str, str]]:
        md = [("containerd-namespace", self.namespace)]
        if self.lease:
            md.append(("containerd-lease", self.lease))
        if self.traceparent:
            md.append(("traceparent", self.traceparent))
        return md

    def with_namespace(self, namespace: str) -> "Client":
        return Client(
            self.address,
            namespace,
            channel=self.channel,
            lease=self.lease,
            traceparent=self.traceparent,
        )

    def with_lease(self, lease: str | None) -> "Client":
        return Client(
            self.address,
            self.namespace,
            channel=self.channel,
            lease=lease,
            traceparent=self.traceparent,
        )

    def with_traceparent(self, traceparent: str | None) -> "Client":
        return Client(
            self.address,
            self.namespace,
            channel=self.channel,
            lease=self.lease,
            traceparent=traceparent,
        )

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- leases

    @contextlib.contextmanager
    def temporary_lease(self) -> Iterator["Client"]:
        """A client whose calls all hold a fresh lease that expires in a day, deleted on exit
        (what containerd's client.WithLease does around a pull)."""
        expires = datetime.datetime.now(datetime.UTC) + LEASE_EXPIRY
        lease_id = f"{os.getpid()}-{os.urandom(6).hex()}"
        labels = {"containerd.io/gc.expire": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
        self.leases.Create(leases_pb2.CreateRequest(id=lease_id, labels=labels))
        try:
            yield self.with_lease(lease_id)
        finally:
            self.leases.Delete(leases_pb2.DeleteRequest(id=lease_id))

    # -- content

    def content_info(self, digest: str) -> content_pb2.Info:
        info: content_pb2.Info = self.content.Info(content_pb2.InfoRequest(digest=digest)).info
        return info

    def has_content(self, digest: str) -> bool:
        try:
            self.content_info(digest)
        except NotFound:
            return False
        return True

    def read_content(self, digest: str, offset: int = 0, size: int = 0) -> Iterator[bytes]:
        request = content_pb2.ReadContentRequest(digest=digest, offset=offset, size=size)
        for response in self.content.Read(request):
            yield response.data

    def read_blob(self, digest: str) -> bytes:
        return b"".join(self.read_content(digest))

    def set_content_labels(self, digest: str, labels: Mapping[str, str]) -> None:
        """Add (or, with an empty value, remove) these labels on a blob."""
        info = content_pb2.Info(digest=digest, labels={k: v for k, v in labels.items() if v})
        mask = field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels])
        self.content.Update(content_pb2.UpdateRequest(info=info, update_mask=mask))

    def write_content(
        self,
        ref: str,
        chunks: Iterator[bytes],
        *,
        total: int = 0,
        expected: str = "",
        labels: Mapping[str, str] | None = None,
        progress: ProgressFn | None = None,
    ) -> str:
        """Write a blob through Content.Write, resuming an interrupted ingest of the same ref
        (its data is kept, as containerd keeps it, and skipped in `chunks`). Returns the
        digest; a blob that already exists is not an error (it is returned as is)."""
        try:
            writer = ContentWriter(self.content, ref, total, expected)
        except AlreadyExists:
            if expected:
                return expected  # and the server added it to our lease, if we hold one
            raise
        try:
            offset = writer.offset
            skip = offset
            for chunk in chunks:
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk = chunk[skip:]
                    skip = 0
                writer.write(chunk)
                offset += len(chunk)
                if progress:
                    progress(ref, offset, total)
            return writer.commit(total, expected, dict(labels or {}))
        except AlreadyExists:
            if expected:
                return expected
            raise
        except FailedPrecondition:
            # Wrong size or digest: these bytes will never be the blob, so resuming them
            # later would only fail again. Leave nothing behind.
            writer.close()
            with contextlib.suppress(NotFound):
                self.content.Abort(content_pb2.AbortRequest(ref=ref))
            raise
        finally:
            writer.close()

    # -- images

    def get_image(self, name: str) -> images_pb2.Image:
        image: images_pb2.Image = self.images.Get(images_pb2.GetImageRequest(name=name)).image
        return image

    def list_images(self, *filters: str) -> list[images_pb2.Image]:
        return list(self.images.List(images_pb2.ListImagesRequest(filters=filters)).images)

    def put_image(
        self, name: str, target: descriptor_pb2.Descriptor, labels: Mapping[str, str] | None = None
    ) -> images_pb2.Image:
        """Create the image, or point an existing one at `target` (as the Go client's pull)."""
        image = images_pb2.Image(name=name, target=target, labels=dict(labels or {}))
        try:
            created: images_pb2.Image = self.images.Create(
                images_pb2.CreateImageRequest(image=image)
            ).image
            return created
        except AlreadyExists:
            mask = field_mask_pb2.FieldMask(
                paths=["target"] + [f"labels.{k}" for k in image.labels]
            )
            updated: images_pb2.Image = self.images.Update(
                images_pb2.UpdateImageRequest(image=image, update_mask=mask)
            ).image
            return updated

    def delete_image(self, name: str, sync: bool = True) -> None:
        self.images.Delete(images_pb2.DeleteImageRequest(name=name, sync=sync))

    # -- snapshots and diff

    def prepare(
        self,
        key: str,
        parent: str = "",
        labels: Mapping[str, str] | None = None,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
    ) -> list[mount_pb2.Mount]:
        request = snapshots_pb2.PrepareSnapshotRequest(
            snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {})
        )
        return list(self.snapshots.Prepare(request).mounts)

    def snapshot_mounts(
        self, key: str, snapshotter: str = DEFAULT_SNAPSHOTTER
    ) -> list[mount_pb2.Mount]:
        request = snapshots_pb2.MountsRequest(snapshotter=snapshotter, key=key)
        return list(self.snapshots.Mounts(request).mounts)

    def stat_snapshot(self, key: str, snapshotter: str = DEFAULT_SNAPSHOTTER) -> snapshots_pb2.Info:
        request = snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key)
        info: snapshots_pb2.Info = self.snapshots.Stat(request).info
        return info

    def commit_snapshot(
        self,
        name: str,
        key: str,
        labels: Mapping[str, str] | None = None,
        snapshotter: str = DEFAULT_SNAPSHOTTER,
    ) -> None:
        request = snapshots_pb2.CommitSnapshotRequest(
            snapshotter=snapshotter, name=name, key=key, labels=dict(labels or {})
        )
        self.snapshots.Commit(request)

    def remove_snapshot(self, key: str, snapshotter: str = DEFAULT_SNAPSHOTTER) -> None:
        self.snapshots.Remove(snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key))

    def apply(
        self, desc: descriptor_pb2.Descriptor, mounts: list[mount_pb2.Mount]
    ) -> descriptor_pb2.Descriptor:
        applied: descriptor_pb2.Descriptor = self.diff.Apply(
            diff_pb2.ApplyRequest(diff=desc, mounts=mounts)
        ).applied
        return applied

    # -- misc

    def server_version(self) -> tuple[str, str]:
        response = self.version.Version(empty_pb2.Empty())
        return response.version, response.revision

    def subscribe(self, *filters: str) -> Stream:
        """Events matching any of `filters` as they happen: iterate, then `cancel()`."""
        stream: Stream = self.events.Subscribe(events_pb2.SubscribeRequest(filters=filters))
        return stream


class ContentWriter:
    """One Content.Write stream: requests go in through a queue, each answered in order."""

    _END = object()

    def __init__(self, content: Stub, ref: str, total: int, expected: str) -> None:
        self._requests: queue.Queue[object] = queue.Queue()
        self._responses = iter(content.Write(self._iterate()))
        self._lock = threading.Lock()
        self.ref = ref
        status = self._send(
            content_pb2.WriteContentRequest(
                action=content_pb2.STAT, ref=ref, total=total, expected=expected
            )
        )
        self.offset = status.offset

    def _iterate(self) -> Iterator[content_pb2.WriteContentRequest]:
        while True:
            item = self._requests.get()
            if item is self._END:
                return
            assert isinstance(item, content_pb2.WriteContentRequest)
            yield item

    def _send(self, request: content_pb2.WriteContentRequest) -> content_pb2.WriteContentResponse:
        with self._lock:
            self._requests.put(request)
            try:
                response: content_pb2.WriteContentResponse = next(self._responses)
            except StopIteration:
                raise FailedPrecondition(f"write of {self.ref} ended early") from None
            except grpc.RpcError as e:
                raise error_from(e) from None
            return response

    def write(self, data: bytes) -> None:
        for start in range(0, len(data), WRITE_CHUNK):
            piece = data[start : start + WRITE_CHUNK]
            response = self._send(
                content_pb2.WriteContentRequest(
                    action=content_pb2.WRITE, offset=self.offset, data=piece
                )
            )
            self.offset = response.offset

    def commit(self, total: int, expected: str, labels: dict[str, str]) -> str:
        response = self._send(
            content_pb2.WriteContentRequest(
                action=content_pb2.COMMIT,
                offset=self.offset,
                total=total,
                expected=expected,
                labels=labels,
            )
        )
        return response.digest

    def close(self) -> None:
        self._requests.put(self._END)
