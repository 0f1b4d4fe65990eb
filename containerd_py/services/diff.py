"""containerd.services.diff.v1.Diff: apply a layer blob onto mounts (the unpack step of a
pull), and compute a layer from two mounts (`ctr snapshots diff`, commit of a container)."""

import os
import tempfile

from containerd_py.api.services.diff.v1 import diff_pb2 as api
from containerd_py.api.types import descriptor_pb2
from containerd_py.diff import apply_to_mounts, diff_mounts
from containerd_py.errdefs import AlreadyExists, InvalidArgument
from containerd_py.metadata.content import Content
from containerd_py.rpc import Call
from containerd_py.services.convert import mounts_from_proto

UNCOMPRESSED = "application/vnd.oci.image.layer.v1.tar"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"


class DiffService:
    def __init__(self, content: Content, tmp_dir: str) -> None:
        self.content = content
        self.tmp_dir = tmp_dir

    def Apply(self, request: api.ApplyRequest, call: Call) -> api.ApplyResponse:
        desc = request.diff
        path = self.content.check_access(call.namespace, desc.digest)
        call.span.attrs.update(digest=desc.digest, media_type=desc.media_type)
        with open(path, "rb", buffering=0) as blob:
            applied = apply_to_mounts(
                mounts_from_proto(list(request.mounts)), blob, desc.media_type
            )
        return api.ApplyResponse(
            applied=descriptor_pb2.Descriptor(
                media_type=UNCOMPRESSED, digest=applied.digest, size=applied.size
            )
        )

    def Diff(self, request: api.DiffRequest, call: Call) -> api.DiffResponse:
        ns = call.namespace
        media_type = request.media_type or GZIP
        if media_type not in (UNCOMPRESSED, GZIP, UNCOMPRESSED + "+zstd"):
            raise InvalidArgument(f"unsupported diff media type: {media_type}")
        ref = request.ref or f"diff-{os.urandom(8).hex()}"
        os.makedirs(self.tmp_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.tmp_dir) as out:
            uncompressed = diff_mounts(
                mounts_from_proto(list(request.left)),
                mounts_from_proto(list(request.right)),
                out,
                media_type,
            )
            out.seek(0)
            writer = self.content.writer(ns, ref, 0, "", call.lease)
            try:
                writer.truncate(0)
                while chunk := out.read(1 << 20):
                    writer.write(chunk)
                labels = dict(request.labels)
                if media_type != UNCOMPRESSED:
                    labels[UNCOMPRESSED_LABEL] = uncompressed.digest  # as containerd labels it
                try:
                    digest = writer.commit(0, "", labels)
                except AlreadyExists:
                    digest = writer.digest()  # the same change was diffed before
                size = out.tell()
            finally:
                writer.close()
        return api.DiffResponse(
            diff=descriptor_pb2.Descriptor(media_type=media_type, digest=digest, size=size)
        )
