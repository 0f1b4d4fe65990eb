"""Conversions the services share: timestamps, descriptors and mounts."""

from google.protobuf import timestamp_pb2

from containerd_py.api.types import descriptor_pb2
from containerd_py.metadata.images import Descriptor
from containerd_py.mount import Mount
from shim.api.types import mount_pb2


def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def descriptor_to_proto(desc: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=desc.media_type,
        digest=desc.digest,
        size=desc.size,
        annotations=desc.annotations,
    )


def descriptor_from_proto(desc: descriptor_pb2.Descriptor) -> Descriptor:
    return Descriptor(desc.media_type, desc.digest, desc.size, dict(desc.annotations))


def mounts_to_proto(mounts: list[Mount]) -> list[mount_pb2.Mount]:
    return [mount_pb2.Mount(type=m.type, source=m.source, options=m.options) for m in mounts]


def mounts_from_proto(mounts: "list[mount_pb2.Mount]") -> list[Mount]:
    return [Mount(m.type, m.source, list(m.options)) for m in mounts]
