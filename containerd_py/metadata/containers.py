"""Containers: the metadata record a task is started from (runtime, spec, rootfs snapshot),
not a running process. The whole wire message is the record, so every field round-trips; the
`snapshotter`, `snapshot_key` and `labels` columns are what the collector reads to keep the
container's snapshot (and anything its labels reference) alive.

Rules and messages are containerd 1.6's metadata/containers.go."""

import sqlite3
from collections.abc import Sequence

from containerd_py import filters
from containerd_py.api.services.containers.v1.containers_pb2 import Container
from containerd_py.errdefs import AlreadyExists, InvalidArgument, NotFound
from containerd_py.metadata.db import DB, dump_labels, now_ns
from containerd_py.metadata.identifiers import validate as validate_id
from containerd_py.metadata.labels import validate as validate_labels
from containerd_py.metadata.namespaces import ensure

# What a full replace (no fieldpaths) may change; runtime and snapshotter are immutable.
_REPLACEABLE = ("labels", "spec", "extensions", "image", "snapshotkey")


def _validate(container: Container) -> None:
    """validateContainer: InvalidArgument with the first rule broken."""
    try:
        validate_id(container.id)
    except InvalidArgument as e:
        raise InvalidArgument(f"container.ID: {e}") from None
    if "" in container.extensions:
        raise InvalidArgument("container.Extension keys must not be zero-length")
    try:
        validate_labels(container.labels)
    except InvalidArgument as e:
        raise InvalidArgument(f"containers.Labels: {e}") from None
    if not container.runtime.name:
        raise InvalidArgument("container.Runtime.Name must be set")
    if not container.HasField("spec"):
        raise InvalidArgument("container.Spec must be set")
    if container.snapshot_key and not container.snapshotter:
        raise InvalidArgument("container.Snapshotter must be set if container.SnapshotKey is set")


def _adaptor(container: Container) -> filters.Adaptor:
    """adaptContainer: id, image, runtime.name and labels.*; an empty field is absent."""

    def adapt(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        if path[0] == "id":
            return container.id, bool(container.id)
        if path[0] == "image":
            return container.image, bool(container.image)
        if path[0] == "runtime" and len(path) > 1 and path[1] == "name":
            name = container.runtime.name
            return name, bool(name)
        if path[0] == "labels":
            return filters.label_adaptor(container.labels, path[1:])
        return "", False

    return adapt


def _copy(container: Container) -> Container:
    copy = Container()
    copy.CopyFrom(container)
    return copy


class Containers:
    def __init__(self, db: DB) -> None:
        self.db = db

    def get(self, ns: str, container_id: str) -> Container:
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT record FROM containers WHERE ns = ? AND id = ?", (ns, container_id)
            ).fetchone()
        if row is None:
            raise NotFound(f'container "{container_id}" in namespace "{ns}"')
        return Container.FromString(row[0])

    def list(self, ns: str, filter_strings: Sequence[str] = ()) -> list[Container]:
        match = filters.parse_all(*filter_strings)  # before reading: a bad filter fails alone
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT record FROM containers WHERE ns = ? ORDER BY id", (ns,)
            ).fetchall()
        found = (Container.FromString(row[0]) for row in rows)
        return [c for c in found if match.match(_adaptor(c))]

    def create(self, ns: str, container: Container) -> Container:
        record = _copy(container)
        try:
            _validate(record)
        except InvalidArgument as e:
            raise InvalidArgument(f"create container failed validation: {e}") from None
        with self.db.tx() as cur:
            ensure(cur, ns)
            if cur.execute(
                "SELECT 1 FROM containers WHERE ns = ? AND id = ?", (ns, record.id)
            ).fetchone():
                raise AlreadyExists(f'container "{record.id}"')
            now = now_ns()
            record.created_at.FromNanoseconds(now)
            record.updated_at.FromNanoseconds(now)
            self._write(cur, ns, record)
        return record

    def update(self, ns: str, container: Container, fieldpaths: Sequence[str]) -> Container:
        """Change the fields named by `fieldpaths`; none means replace every mutable field,
        refusing a different runtime or snapshotter."""
        if not container.id:
            raise InvalidArgument("must specify a container id")
        with self.db.tx() as cur:
            row = cur.execute(
                "SELECT record FROM containers WHERE ns = ? AND id = ?", (ns, container.id)
            ).fetchone()
            if row is None:
                raise _missing(cur, ns, container.id, "update", f'container "{container.id}"')
            updated = Container.FromString(row[0])
            if not fieldpaths:
                if updated.snapshotter != container.snapshotter:
                    raise InvalidArgument("container.Snapshotter field is immutable")
                if updated.runtime.name != container.runtime.name:
                    raise InvalidArgument("container.Runtime.Name field is immutable")
                fieldpaths = _REPLACEABLE
            for path in fieldpaths:
                _apply(updated, container, path)
            try:
                _validate(updated)
            except InvalidArgument as e:
                raise InvalidArgument(f"update failed validation: {e}") from None
            updated.updated_at.FromNanoseconds(now_ns())
            cur.execute("DELETE FROM containers WHERE ns = ? AND id = ?", (ns, container.id))
            self._write(cur, ns, updated)
        return updated

    def delete(self, ns: str, container_id: str) -> None:
        with self.db.tx() as cur:
            cur.execute("DELETE FROM containers WHERE ns = ? AND id = ?", (ns, container_id))
            if cur.rowcount == 0:
                # containerd's %v: no quotes around the id here.
                raise _missing(cur, ns, container_id, "delete", f"container {container_id}")

    @staticmethod
    def _write(cur: sqlite3.Cursor, ns: str, record: Container) -> None:
        # bolt's writeMap drops labels set to "": that is how `labels.KEY` removes one.
        for key in [k for k, v in record.labels.items() if not v]:
            del record.labels[key]
        cur.execute(
            "INSERT INTO containers (ns, id, record, labels, image, snapshotter, snapshot_key, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ns,
                record.id,
                record.SerializeToString(deterministic=True),
                dump_labels(record.labels),
                record.image,
                record.snapshotter,
                record.snapshot_key,
                record.created_at.ToNanoseconds(),
                record.updated_at.ToNanoseconds(),
            ),
        )


def _missing(cur: sqlite3.Cursor, ns: str, container_id: str, verb: str, short: str) -> NotFound:
    """`short`, or the form naming the namespace, which containerd uses when the namespace has
    no containers bucket at all; the nearest we can tell is a namespace holding none now."""
    if cur.execute("SELECT 1 FROM containers WHERE ns = ? LIMIT 1", (ns,)).fetchone():
        return NotFound(short)
    return NotFound(f'cannot {verb} container "{container_id}" in namespace "{ns}"')


def _apply(updated: Container, container: Container, path: str) -> None:
    """One fieldpath of an update, copied from `container` into `updated`."""
    if path.startswith("labels."):
        key = path[len("labels.") :]
        updated.labels[key] = container.labels.get(key, "")  # "" is dropped on write
    elif path.startswith("extensions."):
        key = path[len("extensions.") :]
        # containerd stores an empty Any for a key the request lacks; it never removes one.
        if key in container.extensions:
            updated.extensions[key].CopyFrom(container.extensions[key])
        else:
            updated.extensions[key].Clear()
    elif path == "labels":
        updated.labels.clear()
        updated.labels.update(container.labels)
    elif path == "extensions":
        # bolt's WriteExtensions reuses the bucket, so 1.6 merges extensions, never drops one.
        for key, value in container.extensions.items():
            updated.extensions[key].CopyFrom(value)
    elif path == "spec":
        if container.HasField("spec"):
            updated.spec.CopyFrom(container.spec)
        else:
            updated.ClearField("spec")
    elif path == "image":
        updated.image = container.image
    elif path == "snapshotkey":
        updated.snapshot_key = container.snapshot_key
    else:
        raise InvalidArgument(f'cannot update "{path}" field on "{container.id}"')
