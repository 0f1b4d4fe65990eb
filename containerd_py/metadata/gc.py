"""Garbage collection, containerd's way: mark everything reachable from the roots (images,
containers, live leases, `containerd.io/gc.root` objects, fresh ingests) through parents and
`containerd.io/gc.ref.*` labels, then sweep the rest, first from the metadata, then from disk.

It runs synchronously after every delete and once at start-up (the start-up pass also removes
what a crash left on disk with no record: a blob committed just before the record was written,
a snapshot directory whose transaction never committed)."""

import datetime
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from containerd_py.content.local import LocalStore
from containerd_py.errdefs import ContainerdError
from containerd_py.metadata import leased
from containerd_py.metadata.db import DB, load_labels, now_ns
from containerd_py.snapshots import Snapshotter

log = logging.getLogger("containerd-py.gc")

GC_ROOT = "containerd.io/gc.root"
GC_EXPIRE = "containerd.io/gc.expire"
REF_CONTENT = "containerd.io/gc.ref.content"
REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."

Node = tuple[str, str, str]  # (kind, namespace, key); kind "content", "snapshot", "ingest"


@dataclass
class Stats:
    content: int = 0
    snapshots: int = 0
    leases: int = 0
    ingests: int = 0


def label_refs(ns: str, labels: dict[str, str]) -> Iterable[Node]:
    for key, value in labels.items():
        if key.startswith(REF_CONTENT):
            rest = key[len(REF_CONTENT) :]
            if not rest or rest[0] in "./":
                yield ("content", ns, value)
        elif key.startswith(REF_SNAPSHOT):
            snapshotter = key[len(REF_SNAPSHOT) :].split("/", 1)[0]
            yield ("snapshot", ns, f"{snapshotter}/{value}")


def _expired(labels: dict[str, str], now: datetime.datetime) -> bool:
    value = labels.get(GC_EXPIRE)
    if not value:
        return False
    try:
        expires = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False  # containerd ignores an unreadable expiry and keeps the lease
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=datetime.UTC)
    return expires < now


class Collector:
    def __init__(self, db: DB, store: LocalStore, snapshotters: dict[str, Snapshotter]) -> None:
        self.db = db
        self.store = store
        self.snapshotters = snapshotters

    def collect(self) -> Stats:
        stats = Stats()
        with self.db.tx() as cur:
            live = self._mark(cur, stats)
            self._sweep_metadata(cur, live, stats)
            self._sweep_backends(cur, stats)
        if stats.content or stats.snapshots or stats.leases or stats.ingests:
            log.debug("garbage collected: %s", stats)
        return stats

    def _roots(self, cur: sqlite3.Cursor, stats: Stats) -> list[Node]:
        roots: list[Node] = []
        now = datetime.datetime.now(datetime.UTC)
        for ns, lease_id, labels in cur.execute("SELECT ns, id, labels FROM leases").fetchall():
            if _expired(load_labels(labels), now):
                cur.execute("DELETE FROM leases WHERE ns = ? AND id = ?", (ns, lease_id))
                cur.execute(
                    "DELETE FROM lease_resources WHERE ns = ? AND lease = ?", (ns, lease_id)
                )
                stats.leases += 1
        for ns, rtype, rid in cur.execute("SELECT ns, type, id FROM lease_resources").fetchall():
            if rtype == leased.CONTENT:
                roots.append(("content", ns, rid))
            elif rtype == leased.INGESTS:
                roots.append(("ingest", ns, rid))
            elif rtype.startswith("snapshots/"):
                roots.append(("snapshot", ns, f"{rtype[len('snapshots/') :]}/{rid}"))
        for ns, digest, labels in cur.execute("SELECT ns, digest, labels FROM images").fetchall():
            roots.append(("content", ns, digest))
            roots.extend(label_refs(ns, load_labels(labels)))
        for ns, digest, labels in cur.execute("SELECT ns, digest, labels FROM content"):
            if GC_ROOT in load_labels(labels):
                roots.append(("content", ns, digest))
        for ns, snapshotter, key, labels in cur.execute(
            "SELECT ns, snapshotter, key, labels FROM snapshots"
        ).fetchall():
            if GC_ROOT in load_labels(labels):
                roots.append(("snapshot", ns, f"{snapshotter}/{key}"))
        for ns, snapshotter, key, labels in cur.execute(
            "SELECT ns, snapshotter, snapshot_key, labels FROM containers"
        ).fetchall():
            if snapshotter:
                roots.append(("snapshot", ns, f"{snapshotter}/{key}"))
            roots.extend(label_refs(ns, load_labels(labels)))
        for ns, ref, expires in cur.execute("SELECT ns, ref, expires_at FROM ingests").fetchall():
            if expires == 0 or expires > now_ns():
                roots.append(("ingest", ns, ref))
        return roots

    def _mark(self, cur: sqlite3.Cursor, stats: Stats) -> set[Node]:
        live: set[Node] = set()
        todo = self._roots(cur, stats)
        while todo:
            node = todo.pop()
            if node in live:
                continue
            live.add(node)
            kind, ns, key = node
            if kind == "content":
                row = cur.execute(
                    "SELECT labels FROM content WHERE ns = ? AND digest = ?", (ns, key)
                ).fetchone()
                if row:
                    todo.extend(label_refs(ns, load_labels(row[0])))
            elif kind == "snapshot":
                snapshotter, _, name = key.partition("/")
                row = cur.execute(
                    "SELECT parent, labels FROM snapshots "
                    "WHERE ns = ? AND snapshotter = ? AND key = ?",
                    (ns, snapshotter, name),
                ).fetchone()
                if row:
                    if row[0]:
                        todo.append(("snapshot", ns, f"{snapshotter}/{row[0]}"))
                    todo.extend(label_refs(ns, load_labels(row[1])))
            elif kind == "ingest":
                row = cur.execute(
                    "SELECT expected FROM ingests WHERE ns = ? AND ref = ?", (ns, key)
                ).fetchone()
                if row and row[0]:
                    todo.append(("content", ns, row[0]))
        return live

    def _sweep_metadata(self, cur: sqlite3.Cursor, live: set[Node], stats: Stats) -> None:
        for ns, digest in cur.execute("SELECT ns, digest FROM content").fetchall():
            if ("content", ns, digest) not in live:
                cur.execute("DELETE FROM content WHERE ns = ? AND digest = ?", (ns, digest))
        for ns, snapshotter, key in cur.execute(
            "SELECT ns, snapshotter, key FROM snapshots"
        ).fetchall():
            if ("snapshot", ns, f"{snapshotter}/{key}") not in live:
                cur.execute(
                    "DELETE FROM snapshots WHERE ns = ? AND snapshotter = ? AND key = ?",
                    (ns, snapshotter, key),
                )
        for ns, ref in cur.execute("SELECT ns, ref FROM ingests").fetchall():
            if ("ingest", ns, ref) not in live:
                cur.execute("DELETE FROM ingests WHERE ns = ? AND ref = ?", (ns, ref))

    def _sweep_backends(self, cur: sqlite3.Cursor, stats: Stats) -> None:
        """Remove from disk what no record names any more."""
        blobs = {row[0] for row in cur.execute("SELECT DISTINCT digest FROM content")}
        for info in list(self.store.walk()):
            if info.digest not in blobs:
                try:
                    self.store.delete(info.digest)
                    stats.content += 1
                except ContainerdError as e:
                    log.warning("gc: removing blob %s: %s", info.digest, e)
        refs = {row[0] for row in cur.execute("SELECT backend_ref FROM ingests")}
        for status in self.store.list_statuses():
            if status.ref not in refs:
                try:
                    self.store.abort(status.ref)
                    stats.ingests += 1
                except ContainerdError as e:
                    log.warning("gc: aborting ingest %s: %s", status.ref, e)
        for name, backend in self.snapshotters.items():
            keep = {
                row[0]
                for row in cur.execute(
                    "SELECT backend_key FROM snapshots WHERE snapshotter = ?", (name,)
                )
            }
            stats.snapshots += _prune(backend, keep)


def _prune(backend: Snapshotter, keep: set[str]) -> int:
    """Remove the backend's snapshots not in `keep`, children before parents."""
    removed = 0
    failed: set[str] = set()
    while True:
        infos = list(backend.walk())
        parents = {info.parent for info in infos}
        doomed = [i.name for i in infos if i.name not in keep | parents | failed]
        if not doomed:
            return removed
        for name in doomed:
            try:
                backend.remove(name)
                removed += 1
            except ContainerdError as e:
                log.warning("gc: removing snapshot %s: %s", name, e)
                failed.add(name)
