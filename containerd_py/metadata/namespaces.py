"""Namespaces: created on first use by any other store, or explicitly; deleted only when
empty, as containerd refuses to orphan what a namespace owns."""

import sqlite3
from collections.abc import Mapping, Sequence

from containerd_py.errdefs import AlreadyExists, FailedPrecondition, NotFound
from containerd_py.metadata.db import DB, dump_labels, load_labels, now_ns
from containerd_py.metadata.identifiers import validate
from containerd_py.metadata.labels import apply_label_paths

# What Delete reports a namespace still has, in containerd's words.
_OWNED = (
    ("images", "images"),
    ("content", "blobs"),
    ("snapshots", "snapshots"),
    ("leases", "leases"),
    ("containers", "containers"),
)


def ensure(cur: sqlite3.Cursor, name: str) -> None:
    """Create `name` if it does not exist yet (every mutation in a namespace calls this)."""
    validate(name)
    cur.execute(
        "INSERT OR IGNORE INTO namespaces (name, labels, created_at) VALUES (?, '{}', ?)",
        (name, now_ns()),
    )


class Namespaces:
    def __init__(self, db: DB) -> None:
        self.db = db

    def create(self, name: str, labels: Mapping[str, str]) -> None:
        validate(name)
        with self.db.tx() as cur:
            if cur.execute("SELECT 1 FROM namespaces WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f'namespace "{name}"')
            cur.execute(
                "INSERT INTO namespaces (name, labels, created_at) VALUES (?, ?, ?)",
                (name, dump_labels(labels), now_ns()),
            )

    def get(self, name: str) -> dict[str, str]:
        with self.db.read() as cur:
            row = cur.execute("SELECT labels FROM namespaces WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f'namespace "{name}"')
        return load_labels(row[0])

    def list(self) -> list[tuple[str, dict[str, str]]]:
        with self.db.read() as cur:
            rows = cur.execute("SELECT name, labels FROM namespaces ORDER BY name").fetchall()
        return [(name, load_labels(labels)) for name, labels in rows]

    def update(
        self, name: str, labels: Mapping[str, str], fieldpaths: Sequence[str]
    ) -> dict[str, str]:
        with self.db.tx() as cur:
            row = cur.execute("SELECT labels FROM namespaces WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f'namespace "{name}"')
            current = apply_label_paths(load_labels(row[0]), labels, fieldpaths, "namespace")
            cur.execute(
                "UPDATE namespaces SET labels = ? WHERE name = ?", (dump_labels(current), name)
            )
        return current

    def delete(self, name: str) -> None:
        with self.db.tx() as cur:
            if not cur.execute("SELECT 1 FROM namespaces WHERE name = ?", (name,)).fetchone():
                raise NotFound(f'namespace "{name}"')
            still = [
                word
                for table, word in _OWNED
                if cur.execute(f"SELECT 1 FROM {table} WHERE ns = ? LIMIT 1", (name,)).fetchone()
            ]
            if still:
                raise FailedPrecondition(
                    f'namespace "{name}" must be empty, but it still has {", ".join(still)}'
                )
            cur.execute("DELETE FROM namespaces WHERE name = ?", (name,))
