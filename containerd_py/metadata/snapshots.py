"""A namespace's view of one snapshotter: user keys map to backend keys (`ns/seq/key`), so
namespaces never collide and a commit can re-key without touching the backend's tree.

Backend calls happen inside the metadata transaction: if the backend fails the row is never
written, and if the daemon dies after the backend acted but before the commit, the backend
holds a snapshot no row names, which the collector removes at start-up.
"""

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from containerd_py import filters
from containerd_py.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from containerd_py.metadata import leased
from containerd_py.metadata.db import DB, dump_labels, load_labels, next_sequence, now_ns
from containerd_py.metadata.labels import apply_label_paths
from containerd_py.metadata.labels import validate as validate_labels
from containerd_py.metadata.namespaces import ensure
from containerd_py.snapshots import Kind, Mount, Snapshotter, Usage

TARGET_LABEL = "containerd.io/snapshot.ref"  # the committed name an unpack is heading for


@dataclass
class Info:
    name: str
    parent: str
    kind: Kind
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


def _adaptor(info: Info) -> filters.Adaptor:
    def adapt(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        if path[0] == "kind":
            return info.kind.name.lower(), True
        if path[0] == "name":
            return info.name, True
        if path[0] == "parent":
            return info.parent, True
        if path[0] == "labels":
            return filters.label_adaptor(info.labels, path[1:])
        return "", False

    return adapt


class NamespacedSnapshotter:
    def __init__(self, db: DB, name: str, backend: Snapshotter) -> None:
        self.db = db
        self.name = name
        self.backend = backend

    def _row(self, cur: sqlite3.Cursor, ns: str, key: str) -> tuple[str, str, str, int, int]:
        row = cur.execute(
            "SELECT backend_key, parent, labels, created_at, updated_at FROM snapshots "
            "WHERE ns = ? AND snapshotter = ? AND key = ?",
            (ns, self.name, key),
        ).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key} does not exist")
        return row  # type: ignore[no-any-return]

    def _exists(self, cur: sqlite3.Cursor, ns: str, key: str) -> bool:
        return bool(
            cur.execute(
                "SELECT 1 FROM snapshots WHERE ns = ? AND snapshotter = ? AND key = ?",
                (ns, self.name, key),
            ).fetchone()
        )

    def backend_key(self, ns: str, key: str) -> str:
        with self.db.read() as cur:
            return self._row(cur, ns, key)[0]

    def stat(self, ns: str, key: str) -> Info:
        with self.db.read() as cur:
            backend_key, parent, labels, created, updated = self._row(cur, ns, key)
        kind = self.backend.stat(backend_key).kind
        return Info(key, parent, kind, load_labels(labels), created, updated)

    def update(self, ns: str, info: Info, fieldpaths: Sequence[str]) -> Info:
        if not info.name:
            raise InvalidArgument("snapshot name is required for update")
        with self.db.tx() as cur:
            backend_key, parent, labels, created, _ = self._row(cur, ns, info.name)
            kind = f'snapshot "{info.name}"'
            new = apply_label_paths(load_labels(labels), info.labels, fieldpaths, kind)
            updated = now_ns()
            cur.execute(
                "UPDATE snapshots SET labels = ?, updated_at = ? "
                "WHERE ns = ? AND snapshotter = ? AND key = ?",
                (dump_labels(new), updated, ns, self.name, info.name),
            )
        kind_ = self.backend.stat(backend_key).kind
        return Info(info.name, parent, kind_, new, created, updated)

    def usage(self, ns: str, key: str) -> Usage:
        return self.backend.usage(self.backend_key(ns, key))

    def mounts(self, ns: str, key: str) -> list[Mount]:
        return self.backend.mounts(self.backend_key(ns, key))

    def prepare(
        self, ns: str, key: str, parent: str, labels: Mapping[str, str], lease: str | None
    ) -> list[Mount]:
        return self._create(ns, key, parent, labels, lease, readonly=False)

    def view(
        self, ns: str, key: str, parent: str, labels: Mapping[str, str], lease: str | None
    ) -> list[Mount]:
        return self._create(ns, key, parent, labels, lease, readonly=True)

    def _create(
        self,
        ns: str,
        key: str,
        parent: str,
        labels: Mapping[str, str],
        lease: str | None,
        readonly: bool,
    ) -> list[Mount]:
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        validate_labels(labels)
        with self.db.tx() as cur:
            ensure(cur, ns)
            target = labels.get(TARGET_LABEL)
            if target and self._exists(cur, ns, target):
                raise AlreadyExists(f'target snapshot "{target}"')
            if self._exists(cur, ns, key):
                raise AlreadyExists(f'snapshot "{key}"')
            backend_parent = ""
            if parent:
                try:
                    backend_parent = self._row(cur, ns, parent)[0]
                except NotFound:
                    raise NotFound(f"parent snapshot {parent} does not exist") from None
            backend_key = f"{ns}/{next_sequence(cur, 'snapshot')}/{key}"
            now = now_ns()
            cur.execute(
                "INSERT INTO snapshots (ns, snapshotter, key, backend_key, parent, labels, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ns, self.name, key, backend_key, parent, dump_labels(labels), now, now),
            )
            leased.add(cur, ns, lease, leased.snapshots_type(self.name), key)
            create = self.backend.view if readonly else self.backend.prepare
            return create(backend_key, backend_parent, dict(labels))

    def commit(
        self, ns: str, name: str, key: str, labels: Mapping[str, str], lease: str | None
    ) -> None:
        validate_labels(labels)
        with self.db.tx() as cur:
            if self._exists(cur, ns, name):
                raise AlreadyExists(f'snapshot "{name}"')
            backend_key, parent, *_ = self._row(cur, ns, key)
            if self.backend.stat(backend_key).kind != Kind.ACTIVE:
                raise FailedPrecondition(f"snapshot {key} is not active")
            new_backend_key = f"{ns}/{next_sequence(cur, 'snapshot')}/{name}"
            cur.execute(
                "DELETE FROM snapshots WHERE ns = ? AND snapshotter = ? AND key = ?",
                (ns, self.name, key),
            )
            now = now_ns()
            cur.execute(
                "INSERT INTO snapshots (ns, snapshotter, key, backend_key, parent, labels, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ns, self.name, name, new_backend_key, parent, dump_labels(labels), now, now),
            )
            rtype = leased.snapshots_type(self.name)
            cur.execute(
                "DELETE FROM lease_resources WHERE ns = ? AND type = ? AND id = ?",
                (ns, rtype, key),
            )
            leased.add(cur, ns, lease, rtype, name)
            self.backend.commit(new_backend_key, backend_key, dict(labels))

    def remove(self, ns: str, key: str) -> None:
        """Forget the snapshot; its backend directory goes with the next collection, which the
        caller runs (a removal may also free parents nothing else holds)."""
        with self.db.tx() as cur:
            self._row(cur, ns, key)
            if cur.execute(
                "SELECT 1 FROM snapshots WHERE ns = ? AND snapshotter = ? AND parent = ?",
                (ns, self.name, key),
            ).fetchone():
                raise FailedPrecondition("cannot remove snapshot with child")
            cur.execute(
                "DELETE FROM snapshots WHERE ns = ? AND snapshotter = ? AND key = ?",
                (ns, self.name, key),
            )

    def walk(self, ns: str, filter_strings: Sequence[str] = ()) -> Iterator[Info]:
        match = filters.parse_all(*filter_strings)
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT key, backend_key, parent, labels, created_at, updated_at FROM snapshots "
                "WHERE ns = ? AND snapshotter = ? ORDER BY key",
                (ns, self.name),
            ).fetchall()
        for key, backend_key, parent, labels, created, updated in rows:
            try:
                kind = self.backend.stat(backend_key).kind
            except NotFound:
                continue  # removed between the read and now
            info = Info(key, parent, kind, load_labels(labels), created, updated)
            if match.match(_adaptor(info)):
                yield info
