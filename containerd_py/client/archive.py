"""Import and export of image archives, as `ctr images import/export` do it client-side: OCI
image-layout tars (`index.json`, `oci-layout`, `blobs/`) and `docker save` tars
(`manifest.json`, `<id>.json`, `<layer>/layer.tar`), whose images get a Docker schema2
manifest written for them."""

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator, Sequence
from typing import IO, Any

from containerd_py.api.services.images.v1 import images_pb2
from containerd_py.client import mediatypes, platforms, reference
from containerd_py.client.client import DEFAULT_SNAPSHOTTER, Client
from containerd_py.client.descriptors import Descriptor, to_proto
from containerd_py.client.pull import children_labels
from containerd_py.client.unpack import unpack
from containerd_py.errdefs import InvalidArgument, NotFound

IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1 << 20


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    try:
        f = tar.extractfile(name)
    except KeyError:
        f = None
    if f is None:
        raise InvalidArgument(f"archive has no {name}")
    return f


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"{what}: invalid json: {e}") from None


def _image_name(desc: Descriptor, base_name: str) -> str | None:
    """containerd's import naming: the full name annotation, else a ref.name that is a whole
    reference, else base_name:ref.name."""
    annotations = desc.get("annotations") or {}
    if annotations.get(IMAGE_NAME):
        return str(annotations[IMAGE_NAME])
    ref_name = str(annotations.get(REF_NAME, ""))
    if not ref_name:
        return None
    try:
        parsed = reference.parse(ref_name)
        if "/" in ref_name or "." in ref_name.split(":")[0]:
            return str(parsed)
    except InvalidArgument:
        pass
    return f"{base_name}:{ref_name}" if base_name else None


def _open_tar(archive: str | IO[bytes]) -> tarfile.TarFile:
    try:
        if isinstance(archive, str):
            return tarfile.open(archive)
        return tarfile.open(fileobj=archive)
    except tarfile.TarError as e:
        raise InvalidArgument(f"not an image archive: {e}") from None


def import_archive(
    client: Client,
    archive: str | IO[bytes],
    *,
    unpack_to: str | None = DEFAULT_SNAPSHOTTER,
    platform: str | None = None,
    base_name: str = "",
) -> list[images_pb2.Image]:
    """Load every image of an OCI or docker-save tar into the client's namespace."""
    matcher = platforms.only(platforms.parse(platform)) if platform else platforms.default()
    with _open_tar(archive) as tar:
        names = set(tar.getnames())
        with client.temporary_lease() as leased:
            if "index.json" in names:
                found = _import_oci(leased, tar, base_name)
            elif "manifest.json" in names:
                found = _import_docker(leased, tar)
            else:
                raise InvalidArgument("not an image archive: no index.json or manifest.json")
            images = []
            for name, desc in found:
                images.append(leased.put_image(name, to_proto(desc)))
                if unpack_to:
                    manifest = _platform_manifest(leased, desc, matcher)
                    unpack(leased, manifest, unpack_to)
    return images


def _platform_manifest(
    client: Client, desc: Descriptor, matcher: platforms.MatchComparer
) -> Descriptor:
    while mediatypes.is_index(str(desc.get("mediaType", ""))):
        index = _json(client.read_blob(str(desc["digest"])), str(desc["digest"]))
        present = [m for m in index.get("manifests") or [] if client.has_content(m["digest"])]
        desc = matcher.best(present)
    return desc


def _write_blob(client: Client, tar: tarfile.TarFile, desc: Descriptor) -> None:
    digest = str(desc["digest"])
    if client.has_content(digest):
        return
    algorithm, _, encoded = digest.partition(":")
    with _member(tar, f"blobs/{algorithm}/{encoded}") as f:
        client.write_content(
            f"import-{digest}", _chunks(f), total=int(desc["size"]), expected=digest
        )


def _import_tree(client: Client, tar: tarfile.TarFile, desc: Descriptor) -> None:
    """Write a manifest or index and everything under it that the archive holds, children
    first, each parent labelled with its children for the collector."""
    media_type = str(desc.get("mediaType", ""))
    if not (mediatypes.is_index(media_type) or mediatypes.is_manifest(media_type)):
        _write_blob(client, tar, desc)
        return
    algorithm, _, encoded = str(desc["digest"]).partition(":")
    with _member(tar, f"blobs/{algorithm}/{encoded}") as f:
        data = f.read()
    children, labels = children_labels(media_type, _json(data, str(desc["digest"])))
    for child in children:
        child_type = str(child.get("mediaType", ""))
        try:
            _import_tree(client, tar, child)
        except InvalidArgument:
            if not mediatypes.is_manifest(child_type):  # other platforms may be left out
                raise
    client.write_content(
        f"import-{desc['digest']}", iter([data]), total=len(data),
        expected=str(desc["digest"]), labels=labels,
    )  # fmt: skip


def _import_oci(
    client: Client, tar: tarfile.TarFile, base_name: str
) -> list[tuple[str, Descriptor]]:
    with _member(tar, "index.json") as f:
        index = _json(f.read(), "index.json")
    found: list[tuple[str, Descriptor]] = []
    for desc in index.get("manifests") or []:
        name = _image_name(desc, base_name)
        if name is None:
            continue
        _import_tree(client, tar, desc)
        found.append((name, {k: v for k, v in desc.items() if k != "annotations"}))
    return found


def _import_docker(client: Client, tar: tarfile.TarFile) -> list[tuple[str, Descriptor]]:
    with _member(tar, "manifest.json") as f:
        entries = _json(f.read(), "manifest.json")
    found: list[tuple[str, Descriptor]] = []
    for entry in entries:
        with _member(tar, entry["Config"]) as f:
            config = f.read()
        config_digest = _sha256(config)
        config_desc = {
            "mediaType": mediatypes.DOCKER_CONFIG,
            "digest": config_digest,
            "size": len(config),
        }
        client.write_content(
            f"import-{config_digest}", iter([config]), total=len(config), expected=config_digest
        )
        layers = []
        for path in entry.get("Layers") or []:
            layers.append(_docker_layer(client, tar, path))
        manifest = {
            "schemaVersion": 2,
            "mediaType": mediatypes.DOCKER_MANIFEST,
            "config": config_desc,
            "layers": layers,
        }
        data = json.dumps(manifest, separators=(",", ":")).encode()
        digest = _sha256(data)
        desc = {"mediaType": mediatypes.DOCKER_MANIFEST, "digest": digest, "size": len(data)}
        _, labels = children_labels(mediatypes.DOCKER_MANIFEST, manifest)
        client.write_content(
            f"import-{digest}", iter([data]), total=len(data), expected=digest, labels=labels
        )
        for tag in entry.get("RepoTags") or []:
            found.append((str(reference.parse(tag)), desc))
    return found


def _docker_layer(client: Client, tar: tarfile.TarFile, path: str) -> dict[str, Any]:
    """A docker-save layer (a plain tar, or gzip in newer docker) as a content blob."""
    hasher = hashlib.sha256()
    size = 0
    with _member(tar, path) as f:
        head = f.read(2)
        f.seek(0)
        for chunk in _chunks(f):
            hasher.update(chunk)
            size += len(chunk)
        digest = "sha256:" + hasher.hexdigest()
        if not client.has_content(digest):
            f.seek(0)
            client.write_content(f"import-{digest}", _chunks(f), total=size, expected=digest)
    media_type = mediatypes.DOCKER_LAYER_GZIP if head == b"\x1f\x8b" else mediatypes.DOCKER_LAYER
    return {"mediaType": media_type, "digest": digest, "size": size}


def export_archive(client: Client, out: str | IO[bytes], names: Sequence[str]) -> None:
    """Write the named images as an OCI image-layout tar (with a docker-compatible
    manifest.json beside index.json, as ctr export writes)."""
    manifests: list[dict[str, Any]] = []
    docker_manifest: list[dict[str, Any]] = []
    blobs: dict[str, None] = {}
    for name in names:
        image = client.get_image(name)
        target = image.target
        desc = {"mediaType": target.media_type, "digest": target.digest, "size": target.size}
        _collect(client, desc, blobs)
        parsed = reference.parse(name)
        manifests.append(
            {**desc, "annotations": {IMAGE_NAME: name, REF_NAME: parsed.tag or parsed.digest}}
        )
        if mediatypes.is_manifest(target.media_type):
            body = _json(client.read_blob(target.digest), target.digest)
            docker_manifest.append(
                {
                    "Config": "blobs/sha256/" + body["config"]["digest"].split(":", 1)[1],
                    "RepoTags": [parsed.familiar()] if parsed.tag else [],
                    "Layers": [
                        "blobs/sha256/" + layer["digest"].split(":", 1)[1]
                        for layer in body.get("layers") or []
                    ],
                }
            )
    with tarfile.open(
        out if isinstance(out, str) else None,
        "w",
        fileobj=None if isinstance(out, str) else out,
        format=tarfile.PAX_FORMAT,
    ) as tar:
        _add_dir(tar, "blobs/")
        _add_dir(tar, "blobs/sha256/")
        for digest in blobs:
            info = client.content_info(digest)
            member = tarfile.TarInfo("blobs/sha256/" + digest.split(":", 1)[1])
            member.size = info.size
            member.mode = 0o444
            tar.addfile(member, _BlobReader(client, digest))
        index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests}
        _add_file(tar, "index.json", json.dumps(index).encode())
        if docker_manifest:
            _add_file(tar, "manifest.json", json.dumps(docker_manifest).encode())
        _add_file(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')


def _collect(client: Client, desc: Descriptor, blobs: dict[str, None]) -> None:
    digest = str(desc["digest"])
    if digest in blobs:
        return
    try:
        client.content_info(digest)
    except NotFound:
        if mediatypes.is_manifest(str(desc.get("mediaType", ""))):
            return  # another platform's manifest we never fetched
        raise
    blobs[digest] = None
    media_type = str(desc.get("mediaType", ""))
    if mediatypes.is_index(media_type) or mediatypes.is_manifest(media_type):
        children, _ = children_labels(media_type, _json(client.read_blob(digest), digest))
        for child in children:
            _collect(client, child, blobs)


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    member = tarfile.TarInfo(name)
    member.type = tarfile.DIRTYPE
    member.mode = 0o755
    tar.addfile(member)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    member.mode = 0o444
    tar.addfile(member, io.BytesIO(data))


class _BlobReader(io.RawIOBase):
    """A blob from the content service as a file, for tarfile.addfile."""

    def __init__(self, client: Client, digest: str) -> None:
        self._chunks = client.read_content(digest)
        self._chunk = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes, short only at the end (tarfile insists on full reads)."""
        pieces: list[bytes] = []
        wanted = size
        while wanted != 0:
            if self._pos >= len(self._chunk):
                self._chunk, self._pos = next(self._chunks, b""), 0
                if not self._chunk:
                    break
            end = len(self._chunk) if wanted < 0 else self._pos + wanted
            piece = self._chunk[self._pos : end]
            self._pos += len(piece)
            pieces.append(piece)
            if wanted > 0:
                wanted -= len(piece)
        return b"".join(pieces)
