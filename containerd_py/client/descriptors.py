"""OCI descriptors as the client handles them: the JSON objects of manifests and indexes."""

from collections.abc import Mapping
from typing import Any

from containerd_py.api.types import descriptor_pb2

Descriptor = Mapping[str, Any]


def to_proto(desc: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=str(desc.get("mediaType", "")),
        digest=str(desc["digest"]),
        size=int(desc["size"]),
        annotations=dict(desc.get("annotations") or {}),
    )
