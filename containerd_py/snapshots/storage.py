"""The metadata of one snapshotter in SQLite, as containerd keeps it in a bolt DB
(`snapshots/storage/bolt.go`, `metastore.go`).

Each snapshot has a numeric id that never changes (commit renames the key, not the id) and
names its directory under `snapshots/`. AUTOINCREMENT keeps the id of a removed snapshot from
being handed out again (only an id whose creation rolled back comes round again). Error
messages copy containerd's wording, because ctr prints them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from containerd_py.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from containerd_py.snapshots.api import Info, Kind, Usage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    key        TEXT    NOT NULL UNIQUE,
    parent_id  INTEGER REFERENCES snapshots(id),
    kind       INTEGER NOT NULL,
    labels     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    size       INTEGER NOT NULL DEFAULT 0,
    inodes     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
"""

# The Info columns (see `_info`), with the parent's key joined in.
_INFO = "s.key, p.key, s.kind, s.labels, s.created_at, s.updated_at"
_FROM = "FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id"

_NO_SNAPSHOT = "snapshot does not exist: not found"


@dataclass(frozen=True)
class Snapshot:
    """What a snapshotter needs to build mounts: ids name directories, nearest parent first."""

    id: str
    kind: Kind
    parent_ids: list[str]


def _labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    # containerd drops empty values when it writes labels: an empty value deletes the label.
    return {k: v for k, v in (labels or {}).items() if v}


def _info(row: tuple[Any, ...]) -> Info:
    key, parent, kind, labels, created, updated = row
    return Info(key, parent or "", Kind(kind), json.loads(labels), created, updated)


class Tx:
    """Queries on the store's connection while its lock is held; `commit` ends a write."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def commit(self) -> None:
        self._db.execute("COMMIT")

    def get_info(self, key: str) -> tuple[str, Info, Usage]:
        row = self._db.execute(
            f"SELECT s.id, s.size, s.inodes, {_INFO} {_FROM} WHERE s.key = ?", (key,)
        ).fetchone()
        if row is None:
            raise NotFound(_NO_SNAPSHOT)
        return str(row[0]), _info(row[3:]), Usage(row[1], row[2])

    def get_snapshot(self, key: str) -> Snapshot:
        row = self._db.execute(
            "SELECT id, kind, parent_id FROM snapshots WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            raise NotFound(_NO_SNAPSHOT)
        if row[1] not in (Kind.ACTIVE, Kind.VIEW):
            raise FailedPrecondition(
                f"requested snapshot {key} not active or view: failed precondition"
            )
        return Snapshot(str(row[0]), Kind(row[1]), self._chain(row[2]))

    def create_snapshot(
        self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None
    ) -> Snapshot:
        if kind not in (Kind.ACTIVE, Kind.VIEW):
            raise InvalidArgument(
                f"snapshot type {kind.name.capitalize()} invalid; only snapshots of type "
                "Active or View can be created: invalid argument"
            )
        parent_id = None
        if parent:
            row = self._db.execute(
                "SELECT id, kind FROM snapshots WHERE key = ?", (parent,)
            ).fetchone()
            if row is None:
                raise NotFound(f'missing parent "{parent}" bucket: not found')
            if row[1] != Kind.COMMITTED:
                raise InvalidArgument(
                    f'parent "{parent}" is not committed snapshot: invalid argument'
                )
            parent_id = row[0]
        if self._exists(key):
            raise AlreadyExists(f"snapshot {key}: already exists")
        now = time.time_ns()
        cur = self._db.execute(
            "INSERT INTO snapshots (key, parent_id, kind, labels, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key, parent_id, int(kind), json.dumps(_labels(labels), sort_keys=True), now, now),
        )
        return Snapshot(str(cur.lastrowid), kind, self._chain(parent_id))

    def update_info(self, info: Info, fieldpaths: Sequence[str]) -> Info:
        row = self._db.execute(f"SELECT {_INFO} {_FROM} WHERE s.key = ?", (info.name,)).fetchone()
        if row is None:
            raise NotFound(_NO_SNAPSHOT)
        updated = _info(row)
        if not fieldpaths:
            updated.labels = dict(info.labels)
        for path in fieldpaths:
            if path.startswith("labels."):
                name = path.removeprefix("labels.")
                updated.labels[name] = info.labels.get(name, "")
            elif path == "labels":
                updated.labels = dict(info.labels)
            else:
                raise InvalidArgument(
                    f'cannot update "{path}" field on snapshot "{info.name}": invalid argument'
                )
        updated.labels = _labels(updated.labels)
        updated.updated_at = time.time_ns()
        self._db.execute(
            "UPDATE snapshots SET labels = ?, updated_at = ? WHERE key = ?",
            (json.dumps(updated.labels, sort_keys=True), updated.updated_at, info.name),
        )
        return updated

    def commit_active(
        self, key: str, name: str, usage: Usage, labels: Mapping[str, str] | None
    ) -> None:
        """Turn active `key` into committed `name`, keeping its id; labels are replaced."""
        if self._exists(name):
            raise AlreadyExists(f"committed snapshot {name}: already exists")
        row = self._db.execute("SELECT id, kind FROM snapshots WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise NotFound(f'failed to get active snapshot "{key}": not found')
        if row[1] != Kind.ACTIVE:
            raise FailedPrecondition(f'snapshot "{key}" is not active: failed precondition')
        now = time.time_ns()
        self._db.execute(
            "UPDATE snapshots SET key = ?, kind = ?, labels = ?, created_at = ?, updated_at = ?,"
            " size = ?, inodes = ? WHERE id = ?",
            (
                name,
                int(Kind.COMMITTED),
                json.dumps(_labels(labels), sort_keys=True),
                now,
                now,
                usage.size,
                usage.inodes,
                row[0],
            ),
        )

    def remove(self, key: str) -> str:
        """Delete the row of a snapshot without children; returns its id."""
        row = self._db.execute("SELECT id FROM snapshots WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise NotFound(f"snapshot {key}: not found")
        if self._db.execute("SELECT 1 FROM snapshots WHERE parent_id = ?", (row[0],)).fetchone():
            raise FailedPrecondition("cannot remove snapshot with child: failed precondition")
        self._db.execute("DELETE FROM snapshots WHERE id = ?", (row[0],))
        return str(row[0])

    def walk(self) -> list[Info]:
        # Ordered by key like bolt's byte-ordered buckets (SQLite's BINARY collation is memcmp).
        return [_info(r) for r in self._db.execute(f"SELECT {_INFO} {_FROM} ORDER BY s.key")]

    def ids(self) -> set[str]:
        return {str(r[0]) for r in self._db.execute("SELECT id FROM snapshots")}

    def _exists(self, key: str) -> bool:
        return (
            self._db.execute("SELECT 1 FROM snapshots WHERE key = ?", (key,)).fetchone() is not None
        )

    def _chain(self, parent_id: int | None) -> list[str]:
        ids: list[str] = []
        while parent_id is not None:
            ids.append(str(parent_id))
            (parent_id,) = self._db.execute(
                "SELECT parent_id FROM snapshots WHERE id = ?", (parent_id,)
            ).fetchone()
        return ids


class MetaStore:
    """One SQLite connection shared by the daemon's threads, serialised by a lock."""

    def __init__(self, path: str) -> None:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # private, like bolt's 0600
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        with self.write() as tx:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            tx.commit()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._lock:
            yield Tx(self._db)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """One transaction: the caller must `commit()` it; leaving without that rolls back."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._db)
            finally:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._db.close()
