"""Pull, as containerd's Go client does it: resolve the reference, fetch the tree (index →
the manifest for our platform → config and layers) into the content store under a lease,
label each parent with its children (`containerd.io/gc.ref.content.*`) so the collector keeps
them, point an image record at the root, and unpack the layers into snapshots (`unpack.py`)."""

import hashlib
import json
from collections.abc import Iterator, Mapping
from concurrent import futures
from typing import Any

from containerd_py.api.services.images.v1 import images_pb2
from containerd_py.client import mediatypes, platforms, reference
from containerd_py.client.client import DEFAULT_SNAPSHOTTER, Client, ProgressFn
from containerd_py.client.descriptors import Descriptor, to_proto
from containerd_py.client.remotes.resolver import Resolver
from containerd_py.client.unpack import unpack
from containerd_py.errdefs import InvalidArgument, NotFound

LAYER_CONCURRENCY = 3  # containerd's default max concurrent downloads
DISTRIBUTION_SOURCE = "containerd.io/distribution.source."


def ref_key(desc: Descriptor) -> str:
    """The ingest ref for a descriptor, named by kind as containerd's remotes.MakeRefKey."""
    media_type = str(desc.get("mediaType", ""))
    if mediatypes.is_index(media_type):
        kind = "index"
    elif mediatypes.is_manifest(media_type):
        kind = "manifest"
    elif mediatypes.is_config(media_type):
        kind = "config"
    elif mediatypes.is_layer(media_type):
        kind = "layer"
    else:
        kind = "unknown"
    return f"{kind}-{desc['digest']}"


def children_labels(
    media_type: str, body: Mapping[str, Any]
) -> tuple[list[Descriptor], dict[str, str]]:
    """A manifest's or index's children and the gc labels that keep them."""
    labels: dict[str, str] = {}
    children: list[Descriptor] = []
    if mediatypes.is_index(media_type):
        for i, child in enumerate(body.get("manifests") or []):
            children.append(child)
            labels[f"containerd.io/gc.ref.content.m.{i}"] = str(child["digest"])
    elif mediatypes.is_manifest(media_type):
        config = body.get("config")
        if config:
            children.append(config)
            labels["containerd.io/gc.ref.content.config"] = str(config["digest"])
        for i, layer in enumerate(body.get("layers") or []):
            children.append(layer)
            labels[f"containerd.io/gc.ref.content.l.{i}"] = str(layer["digest"])
    return children, labels


class Puller:
    """Fetches one image's tree for one platform. Small JSON blobs (index, manifest) are read
    into memory, verified and parsed before anything below them is fetched."""

    def __init__(
        self,
        client: Client,
        resolver: Resolver,
        name: str,
        matcher: platforms.MatchComparer,
        progress: ProgressFn | None,
    ) -> None:
        self.client = client
        self.name = name
        self.matcher = matcher
        self.progress = progress
        self.fetcher = resolver.fetcher(name)
        parsed = reference.parse(name)
        self.source_label = {DISTRIBUTION_SOURCE + parsed.host: parsed.repository}

    def fetch_tree(self, root: Descriptor) -> Descriptor:
        """Fetch `root` and what our platform needs below it; return the chosen manifest."""
        media_type = str(root.get("mediaType", ""))
        data, body = self._read_json(root)
        if mediatypes.is_index(media_type):
            chosen = self.matcher.best(list(body.get("manifests") or []))
            _, labels = children_labels(media_type, {"manifests": [chosen]})
            self._store(root, data, labels)
            return self.fetch_tree(chosen)
        if mediatypes.is_manifest(media_type):
            children, labels = children_labels(media_type, body)
            self._store(root, data, labels)
            with futures.ThreadPoolExecutor(LAYER_CONCURRENCY) as pool:
                for done in [pool.submit(self._fetch, child) for child in children]:
                    done.result()
            return root
        raise NotFound(f"unexpected media type {media_type} for {root['digest']}")

    def _read_json(self, desc: Descriptor) -> tuple[bytes, dict[str, Any]]:
        with self.fetcher.fetch(desc) as stream:
            data = b"".join(_chunks(stream))
        if len(data) != int(desc["size"]) or sha256(data) != desc["digest"]:
            raise InvalidArgument(f"{desc['digest']}: content does not match its descriptor")
        try:
            body = json.loads(data)
        except ValueError as e:
            raise InvalidArgument(f"{desc['digest']}: invalid json: {e}") from None
        if not isinstance(body, dict):
            raise InvalidArgument(f"{desc['digest']}: not a json object")
        return data, body

    def _store(self, desc: Descriptor, data: bytes, labels: Mapping[str, str]) -> None:
        labels = {**self.source_label, **labels}
        if self.client.has_content(str(desc["digest"])):
            self.client.set_content_labels(str(desc["digest"]), labels)
            return
        self.client.write_content(
            ref_key(desc),
            iter([data]),
            total=len(data),
            expected=str(desc["digest"]),
            labels=labels,
        )

    def _fetch(self, desc: Descriptor) -> None:
        """Fetch one blob into the content store unless it is there already."""
        if self.client.has_content(str(desc["digest"])):
            self.client.set_content_labels(str(desc["digest"]), self.source_label)
            return
        with self.fetcher.fetch(desc) as stream:
            self.client.write_content(
                ref_key(desc),
                _chunks(stream),
                total=int(desc["size"]),
                expected=str(desc["digest"]),
                labels=self.source_label,
                progress=self.progress,
            )


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _chunks(stream: Any) -> Iterator[bytes]:
    """A fetched body as chunks, whether the fetcher gave an iterator or a file."""
    if hasattr(stream, "read"):
        while chunk := stream.read(1 << 20):
            yield chunk
    else:
        yield from stream


def pull(
    client: Client,
    ref: str,
    *,
    resolver: Resolver | None = None,
    platform: str | None = None,
    unpack_to: str | None = DEFAULT_SNAPSHOTTER,
    progress: ProgressFn | None = None,
) -> images_pb2.Image:
    """Pull `ref` into the client's namespace; unpack it into `unpack_to` unless None.
    The image record is named by the normalized reference (`docker.io/library/busybox:latest`)."""
    own_resolver = resolver is None
    resolver = resolver or Resolver()
    matcher = platforms.only(platforms.parse(platform)) if platform else platforms.default()
    try:
        name, root = resolver.resolve(ref)
        with client.temporary_lease() as leased:
            puller = Puller(leased, resolver, name, matcher, progress)
            manifest = puller.fetch_tree(root)
            image = leased.put_image(name, to_proto(root))
            if unpack_to:
                unpack(leased, manifest, unpack_to)
        return image
    finally:
        if own_resolver:
            resolver.close()
