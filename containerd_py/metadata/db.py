"""The metadata database: containerd's bolt `meta.db`, kept in SQLite.

What a namespace owns lives here — namespaces, images, the namespace's view of content (a blob
is stored once on disk, but each namespace that wrote it has its own record and labels), leases
and the resources they hold, and the mapping from a namespace's snapshot keys to the backend
snapshotter's keys. Every mutation is one transaction (`tx()`), so a daemon killed at any
moment restarts with either all of a change or none of it.

One connection is shared by the gRPC worker threads behind a lock: SQLite serialises writers
anyway, and the calls are short.
"""

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping

SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
  name TEXT PRIMARY KEY, labels TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS images (
  ns TEXT NOT NULL, name TEXT NOT NULL,
  media_type TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
  annotations TEXT NOT NULL, labels TEXT NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (ns, name));
CREATE TABLE IF NOT EXISTS content (
  ns TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL, labels TEXT NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (ns, digest));
CREATE TABLE IF NOT EXISTS ingests (
  ns TEXT NOT NULL, ref TEXT NOT NULL, backend_ref TEXT NOT NULL, expected TEXT NOT NULL,
  expires_at INTEGER NOT NULL, PRIMARY KEY (ns, ref));
CREATE TABLE IF NOT EXISTS leases (
  ns TEXT NOT NULL, id TEXT NOT NULL, labels TEXT NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY (ns, id));
CREATE TABLE IF NOT EXISTS lease_resources (
  ns TEXT NOT NULL, lease TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
  PRIMARY KEY (ns, lease, type, id));
CREATE TABLE IF NOT EXISTS snapshots (
  ns TEXT NOT NULL, snapshotter TEXT NOT NULL, key TEXT NOT NULL,
  backend_key TEXT NOT NULL UNIQUE, parent TEXT NOT NULL, labels TEXT NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (ns, snapshotter, key));
CREATE TABLE IF NOT EXISTS containers (
  ns TEXT NOT NULL, id TEXT NOT NULL, record BLOB NOT NULL, labels TEXT NOT NULL,
  image TEXT NOT NULL, snapshotter TEXT NOT NULL, snapshot_key TEXT NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (ns, id));
CREATE TABLE IF NOT EXISTS sequence (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def now_ns() -> int:
    return time.time_ns()


def dump_labels(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(labels), sort_keys=True)


def load_labels(text: str) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(text)
    return loaded


class DB:
    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        # autocommit mode: transactions are explicit (tx()), never implicit.
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # a committed mutation survives a crash
        self._conn.execute("PRAGMA foreign_keys=OFF")
        self._lock = threading.RLock()
        with self.tx() as cur:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    cur.execute(statement)

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction: everything inside commits together or not at all."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Cursor]:
        """A consistent read (one snapshot of the database)."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN")
            try:
                yield cur
            finally:
                cur.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def next_sequence(cur: sqlite3.Cursor, name: str) -> int:
    """A counter that never repeats, even across restarts (backend snapshot keys use it)."""
    cur.execute(
        "INSERT INTO sequence (name, value) VALUES (?, 1) "
        "ON CONFLICT(name) DO UPDATE SET value = value + 1",
        (name,),
    )
    row = cur.execute("SELECT value FROM sequence WHERE name = ?", (name,)).fetchone()
    return int(row[0])
