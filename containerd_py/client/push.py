"""Push an image from the content store to a registry: blobs first (config, layers), then
the manifests bottom-up, the root last under the reference's tag, as containerd's client
pushes. Manifests of other platforms that were never fetched are skipped."""

import json
from typing import Any

from containerd_py.client import mediatypes
from containerd_py.client.client import Client
from containerd_py.client.descriptors import Descriptor
from containerd_py.client.pull import children_labels
from containerd_py.client.remotes.resolver import Resolver
from containerd_py.errdefs import NotFound


def push(client: Client, ref: str, *, resolver: Resolver, image: str | None = None) -> None:
    """Push the image named `image` (default: `ref`) as `ref`."""
    record = client.get_image(image or ref)
    pusher = resolver.pusher(ref)
    target = record.target
    root = {"mediaType": target.media_type, "digest": target.digest, "size": target.size}

    def push_tree(desc: Descriptor, is_root: bool) -> None:
        media_type = str(desc.get("mediaType", ""))
        digest = str(desc["digest"])
        if mediatypes.is_index(media_type) or mediatypes.is_manifest(media_type):
            data = client.read_blob(digest)
            body: dict[str, Any] = json.loads(data)
            children, _ = children_labels(media_type, body)
            for child in children:
                try:
                    push_tree(child, False)
                except NotFound:
                    if not mediatypes.is_manifest(str(child.get("mediaType", ""))):
                        raise
            pusher.push(desc, data, by_digest=not is_root)
            return
        client.content_info(digest)  # NotFound before any byte goes out
        pusher.push(desc, _Reader(client, digest))

    push_tree(root, True)


class _Reader:
    """A blob as the pusher reads it: the content service's chunks (at most 1 MiB, never
    past the end, so never more than the pusher asks for)."""

    def __init__(self, client: Client, digest: str) -> None:
        self._chunks = client.read_content(digest)

    def read(self, size: int = -1) -> bytes:
        return next(self._chunks, b"")
