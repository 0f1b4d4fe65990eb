"""Images: a name in a namespace pointing at a target descriptor (usually an index or a
manifest in the content store). Deleting one is what lets the collector reclaim its blobs."""

import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from containerd_py import filters
from containerd_py.errdefs import AlreadyExists, InvalidArgument, NotFound
from containerd_py.metadata.db import DB, dump_labels, load_labels, now_ns
from containerd_py.metadata.labels import apply_label_paths
from containerd_py.metadata.labels import validate as validate_labels
from containerd_py.metadata.namespaces import ensure

DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class Image:
    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


def _validate(image: Image) -> None:
    if not image.name:
        raise InvalidArgument("image name must not be empty")
    validate_labels(image.labels)
    if not DIGEST.match(image.target.digest):
        raise InvalidArgument(f'Target.Digest "{image.target.digest}" invalid')
    if image.target.size <= 0:
        raise InvalidArgument("Target.Size must be greater than zero")
    if not image.target.media_type:
        raise InvalidArgument("Target.MediaType must be set")


def _row(row: tuple[str, str, str, int, str, str, int, int]) -> Image:
    name, media_type, digest, size, annotations, labels, created, updated = row
    target = Descriptor(media_type, digest, size, load_labels(annotations))
    return Image(name, target, load_labels(labels), created, updated)


_COLUMNS = "name, media_type, digest, size, annotations, labels, created_at, updated_at"


def _adaptor(image: Image) -> filters.Adaptor:
    def adapt(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        if path[0] == "name":
            return image.name, True
        if path[0] == "target" and len(path) > 1:
            if path[1] == "digest":
                return image.target.digest, True
            if path[1] == "mediatype":
                return image.target.media_type, True
        if path[0] == "labels":
            return filters.label_adaptor(image.labels, path[1:])
        return "", False

    return adapt


class Images:
    def __init__(self, db: DB) -> None:
        self.db = db

    def get(self, ns: str, name: str) -> Image:
        with self.db.read() as cur:
            row = cur.execute(
                f"SELECT {_COLUMNS} FROM images WHERE ns = ? AND name = ?", (ns, name)
            ).fetchone()
        if row is None:
            raise NotFound(f'image "{name}"')
        return _row(row)

    def list(self, ns: str, filter_strings: Sequence[str] = ()) -> Iterator[Image]:
        match = filters.parse_all(*filter_strings)
        with self.db.read() as cur:
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM images WHERE ns = ? ORDER BY name", (ns,)
            ).fetchall()
        for row in rows:
            image = _row(row)
            if match.match(_adaptor(image)):
                yield image

    def create(self, ns: str, image: Image) -> Image:
        _validate(image)
        with self.db.tx() as cur:
            ensure(cur, ns)
            if cur.execute(
                "SELECT 1 FROM images WHERE ns = ? AND name = ?", (ns, image.name)
            ).fetchone():
                raise AlreadyExists(f'image "{image.name}"')
            image.created_at = image.updated_at = now_ns()
            self._write(cur, ns, image)
        return image

    def update(self, ns: str, image: Image, fieldpaths: Sequence[str]) -> Image:
        if not image.name:
            raise InvalidArgument("image name is required for update")
        with self.db.tx() as cur:
            row = cur.execute(
                f"SELECT {_COLUMNS} FROM images WHERE ns = ? AND name = ?", (ns, image.name)
            ).fetchone()
            if row is None:
                raise NotFound(f'image "{image.name}"')
            current = _row(row)
            if not fieldpaths:
                updated = Image(image.name, image.target, dict(image.labels), current.created_at)
            else:
                updated = _apply_paths(current, image, fieldpaths)
            _validate(updated)
            updated.updated_at = now_ns()
            cur.execute("DELETE FROM images WHERE ns = ? AND name = ?", (ns, image.name))
            self._write(cur, ns, updated)
        return updated

    def delete(self, ns: str, name: str) -> None:
        with self.db.tx() as cur:
            cur.execute("DELETE FROM images WHERE ns = ? AND name = ?", (ns, name))
            if cur.rowcount == 0:
                raise NotFound(f'image "{name}"')

    @staticmethod
    def _write(cur: sqlite3.Cursor, ns: str, image: Image) -> None:
        cur.execute(
            f"INSERT INTO images (ns, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ns,
                image.name,
                image.target.media_type,
                image.target.digest,
                image.target.size,
                dump_labels(image.target.annotations),
                dump_labels(image.labels),
                image.created_at,
                image.updated_at,
            ),
        )


def _apply_paths(current: Image, image: Image, fieldpaths: Sequence[str]) -> Image:
    updated = Image(
        current.name, current.target, dict(current.labels), current.created_at, current.updated_at
    )
    for path in fieldpaths:
        if path == "labels" or path.startswith("labels."):
            updated.labels = apply_label_paths(updated.labels, image.labels, [path], "image")
        elif path == "target":
            updated.target = image.target
        elif path == "annotations":
            target = updated.target
            annotations = dict(image.target.annotations)
            updated.target = Descriptor(target.media_type, target.digest, target.size, annotations)
        else:
            raise InvalidArgument(f'cannot update "{path}" field on image "{image.name}"')
    return updated
