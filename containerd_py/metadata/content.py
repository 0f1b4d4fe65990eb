"""Each namespace's view of the content store: one blob on disk, a record (with labels) per
namespace that committed it. Writes go through the store's ingests under a backend ref that
carries the namespace (`ns/seq/ref`), so two namespaces never share an ingest."""

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from containerd_py import filters
from containerd_py.content.local import LocalStore, Writer
from containerd_py.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from containerd_py.metadata import leased
from containerd_py.metadata.db import DB, dump_labels, load_labels, next_sequence, now_ns
from containerd_py.metadata.labels import apply_label_paths
from containerd_py.metadata.labels import validate as validate_labels
from containerd_py.metadata.namespaces import ensure

INGEST_EXPIRY_NS = 24 * 3600 * 10**9  # an ingest outside any lease is stale after a day


@dataclass
class Info:
    digest: str
    size: int
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass
class Status:
    ref: str
    offset: int
    total: int
    expected: str
    started_at: int
    updated_at: int


def _adaptor(info: Info) -> filters.Adaptor:
    def adapt(path: Sequence[str]) -> tuple[str, bool]:
        if not path:
            return "", False
        if path[0] == "digest":
            return info.digest, True
        if path[0] == "size":
            return "", False  # containerd does not filter on size either
        if path[0] == "labels":
            return filters.label_adaptor(info.labels, path[1:])
        return "", False

    return adapt


def _ref_adaptor(ref: str) -> filters.Adaptor:
    def adapt(path: Sequence[str]) -> tuple[str, bool]:
        return (ref, True) if path and path[0] == "ref" else ("", False)

    return adapt


class Content:
    def __init__(self, db: DB, store: LocalStore) -> None:
        self.db = db
        self.store = store

    def info(self, ns: str, digest: str) -> Info:
        with self.db.read() as cur:
            row = cur.execute(
                "SELECT size, labels, created_at, updated_at FROM content "
                "WHERE ns = ? AND digest = ?",
                (ns, digest),
            ).fetchone()
        if row is None:
            raise NotFound(f"content digest {digest}")
        return Info(digest, row[0], load_labels(row[1]), row[2], row[3])

    def update(self, ns: str, info: Info, fieldpaths: Sequence[str]) -> Info:
        with self.db.tx() as cur:
            row = cur.execute(
                "SELECT size, labels, created_at FROM content WHERE ns = ? AND digest = ?",
                (ns, info.digest),
            ).fetchone()
            if row is None:
                raise NotFound(f"content digest {info.digest}")
            kind = f'content info "{info.digest}"'
            labels = apply_label_paths(load_labels(row[1]), info.labels, fieldpaths, kind)
            updated = now_ns()
            cur.execute(
                "UPDATE content SET labels = ?, updated_at = ? WHERE ns = ? AND digest = ?",
                (dump_labels(labels), updated, ns, info.digest),
            )
        return Info(info.digest, row[0], labels, row[2], updated)

    def walk(self, ns: str, filter_strings: Sequence[str] = ()) -> Iterator[Info]:
        match = filters.parse_all(*filter_strings)
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT digest, size, labels, created_at, updated_at FROM content "
                "WHERE ns = ? ORDER BY digest",
                (ns,),
            ).fetchall()
        for digest, size, labels, created, updated in rows:
            info = Info(digest, size, load_labels(labels), created, updated)
            if match.match(_adaptor(info)):
                yield info

    def exists(self, ns: str, digest: str) -> bool:
        with self.db.read() as cur:
            return bool(
                cur.execute(
                    "SELECT 1 FROM content WHERE ns = ? AND digest = ?", (ns, digest)
                ).fetchone()
            )

    def delete(self, ns: str, digest: str) -> None:
        """Forget the blob in this namespace; the collector removes the file when no namespace
        has it any more."""
        with self.db.tx() as cur:
            cur.execute("DELETE FROM content WHERE ns = ? AND digest = ?", (ns, digest))
            if cur.rowcount == 0:
                raise NotFound(f"content digest {digest}")

    def check_access(self, ns: str, digest: str) -> str:
        """The blob's path, if this namespace may read it."""
        self.info(ns, digest)
        return self.store.blob_path(digest)

    def read_at(self, ns: str, digest: str, offset: int, size: int) -> bytes:
        self.info(ns, digest)
        return self.store.read_at(digest, offset, size)

    # Ingests.

    def _ingest(self, cur: sqlite3.Cursor, ns: str, ref: str) -> tuple[str, str] | None:
        row = cur.execute(
            "SELECT backend_ref, expected FROM ingests WHERE ns = ? AND ref = ?", (ns, ref)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def status(self, ns: str, ref: str) -> Status:
        with self.db.read() as cur:
            ingest = self._ingest(cur, ns, ref)
        if ingest is None:
            raise NotFound(f"reference {ref}")
        backend_ref, _ = ingest
        try:
            st = self.store.status(backend_ref)
        except NotFound:
            raise NotFound(f"reference {ref}") from None
        return Status(ref, st.offset, st.total, st.expected, st.started_at, st.updated_at)

    def list_statuses(self, ns: str, filter_strings: Sequence[str] = ()) -> list[Status]:
        match = filters.parse_all(*filter_strings)
        with self.db.read() as cur:
            refs = cur.execute(
                "SELECT ref FROM ingests WHERE ns = ? ORDER BY ref", (ns,)
            ).fetchall()
        statuses = []
        for (ref,) in refs:
            try:
                st = self.status(ns, ref)
            except NotFound:
                continue  # its data was never written: nothing to report
            if match.match(_ref_adaptor(ref)):
                statuses.append(st)
        return statuses

    def abort(self, ns: str, ref: str) -> None:
        with self.db.tx() as cur:
            ingest = self._ingest(cur, ns, ref)
            if ingest is None:
                raise NotFound(f"reference {ref}")
            cur.execute("DELETE FROM ingests WHERE ns = ? AND ref = ?", (ns, ref))
            try:
                self.store.abort(ingest[0])
            except NotFound:
                pass

    def writer(
        self, ns: str, ref: str, total: int, expected: str, lease: str | None
    ) -> "NamespacedWriter":
        if not ref:
            raise InvalidArgument("ref must not be empty")
        with self.db.tx() as cur:
            ensure(cur, ns)
            if (
                expected
                and cur.execute(
                    "SELECT 1 FROM content WHERE ns = ? AND digest = ?", (ns, expected)
                ).fetchone()
            ):
                leased.add(cur, ns, lease, leased.CONTENT, expected)
                exists = True
            else:
                exists = False
                ingest = self._ingest(cur, ns, ref)
                if ingest is None:
                    backend_ref = f"{ns}/{next_sequence(cur, 'ingest')}/{ref}"
                    expires = 0 if lease else now_ns() + INGEST_EXPIRY_NS
                    cur.execute(
                        "INSERT INTO ingests (ns, ref, backend_ref, expected, expires_at) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (ns, ref, backend_ref, expected, expires),
                    )
                else:
                    backend_ref = ingest[0]
                    if expected:
                        cur.execute(
                            "UPDATE ingests SET expected = ? WHERE ns = ? AND ref = ?",
                            (expected, ns, ref),
                        )
                leased.add(cur, ns, lease, leased.INGESTS, ref)
        if exists:
            raise AlreadyExists(f"content {expected}")
        # Verification against `expected` is ours, at commit: the store only hashes.
        backend = self.store.writer(backend_ref, total=total)
        return NamespacedWriter(self, ns, ref, backend, total, expected, lease)


class NamespacedWriter:
    def __init__(
        self,
        content: Content,
        ns: str,
        ref: str,
        backend: Writer,
        total: int,
        expected: str,
        lease: str | None,
    ) -> None:
        self.content = content
        self.ns = ns
        self.ref = ref
        self.backend = backend
        self.total = total
        self.expected = expected
        self.lease = lease

    def status(self) -> Status:
        st = self.backend.status()
        return Status(self.ref, st.offset, st.total, self.expected, st.started_at, st.updated_at)

    def write(self, data: bytes) -> None:
        self.backend.write(data)

    def truncate(self, size: int) -> None:
        self.backend.truncate(size)

    def digest(self) -> str:
        return self.backend.digest()

    def close(self) -> None:
        self.backend.close()

    def commit(self, size: int, expected: str, labels: Mapping[str, str]) -> str:
        """Verify, move the blob into place and record it in the namespace, in that order: a
        crash between the two leaves a blob no namespace has, which the start-up collection
        removes."""
        validate_labels(labels)
        st = self.backend.status()
        expected = expected or self.expected
        if size and size != st.offset:
            raise FailedPrecondition(f'"{self.ref}" failed size validation: {st.offset} != {size}')
        actual = self.backend.digest()
        if expected and expected != actual:
            raise FailedPrecondition(f'"{self.ref}" unexpected digest')
        ns, db = self.ns, self.content.db
        # Under the transaction's lock, so the collector never sees the blob without its record.
        with db.tx() as cur:
            try:
                self.backend.commit(size, expected)
            except AlreadyExists:
                pass  # another namespace has the same bytes: share them
            cur.execute("DELETE FROM ingests WHERE ns = ? AND ref = ?", (ns, self.ref))
            cur.execute(
                "DELETE FROM lease_resources WHERE ns = ? AND type = ? AND id = ?",
                (ns, leased.INGESTS, self.ref),
            )
            exists = cur.execute(
                "SELECT 1 FROM content WHERE ns = ? AND digest = ?", (ns, actual)
            ).fetchone()
            if not exists:
                now = now_ns()
                cur.execute(
                    "INSERT INTO content (ns, digest, size, labels, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (ns, actual, st.offset, dump_labels(labels), now, now),
                )
            leased.add(cur, ns, self.lease, leased.CONTENT, actual)
        if exists:
            raise AlreadyExists(f"content {actual}")
        return actual
