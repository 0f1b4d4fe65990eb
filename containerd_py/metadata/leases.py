"""Leases: a client's claim on content, snapshots and ingests while it works (a pull holds
one until the image record points at what it fetched). Deleting a lease releases them to the
collector."""

import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from containerd_py import filters
from containerd_py.errdefs import AlreadyExists, InvalidArgument, NotFound, NotImplemented_
from containerd_py.metadata.db import DB, dump_labels, load_labels, now_ns
from containerd_py.metadata.labels import validate as validate_labels
from containerd_py.metadata.namespaces import ensure

DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


@dataclass
class Lease:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: int = 0


def _check_resource(rtype: str, rid: str) -> None:
    kind, _, rest = rtype.partition("/")
    if kind == "content":
        if rest:
            raise InvalidArgument(f"invalid resource type {rtype}")
        if not DIGEST.match(rid):
            raise InvalidArgument(f"invalid content resource id {rid}")
    elif kind == "snapshots":
        if not rest or "/" in rest:
            raise InvalidArgument(f"invalid snapshot resource type {rtype}")
    elif kind == "ingests":
        if rest:
            raise InvalidArgument(f"invalid resource type {rtype}")
    else:
        raise NotImplemented_(f"resource type {rtype} not supported yet")


def _require(cur: sqlite3.Cursor, ns: str, lease_id: str) -> None:
    if not cur.execute("SELECT 1 FROM leases WHERE ns = ? AND id = ?", (ns, lease_id)).fetchone():
        raise NotFound(f'lease "{lease_id}"')


class Leases:
    def __init__(self, db: DB) -> None:
        self.db = db

    def create(self, ns: str, lease_id: str, labels: Mapping[str, str]) -> Lease:
        # Unlike namespaces, lease ids are free-form (the Go client makes them from base64).
        if not lease_id:
            raise InvalidArgument("lease id must be provided")
        validate_labels(labels)
        with self.db.tx() as cur:
            ensure(cur, ns)
            if cur.execute(
                "SELECT 1 FROM leases WHERE ns = ? AND id = ?", (ns, lease_id)
            ).fetchone():
                raise AlreadyExists(f'lease "{lease_id}"')
            lease = Lease(lease_id, dict(labels), now_ns())
            cur.execute(
                "INSERT INTO leases (ns, id, labels, created_at) VALUES (?, ?, ?, ?)",
                (ns, lease_id, dump_labels(labels), lease.created_at),
            )
        return lease

    def delete(self, ns: str, lease_id: str) -> None:
        with self.db.tx() as cur:
            cur.execute("DELETE FROM leases WHERE ns = ? AND id = ?", (ns, lease_id))
            if cur.rowcount == 0:
                raise NotFound(f'lease "{lease_id}"')
            cur.execute("DELETE FROM lease_resources WHERE ns = ? AND lease = ?", (ns, lease_id))

    def find(self, ns: str, filter_strings: Sequence[str] = ()) -> list[Lease]:
        match = filters.parse_all(*filter_strings)
        with self.db.read() as cur:
            rows = cur.execute(
                "SELECT id, labels, created_at FROM leases WHERE ns = ? ORDER BY created_at",
                (ns,),
            ).fetchall()
        found = []
        for lease_id, labels, created in rows:
            lease = Lease(lease_id, load_labels(labels), created)

            def adapt(path: Sequence[str], lease: Lease = lease) -> tuple[str, bool]:
                if path and path[0] == "id":
                    return lease.id, True
                if path and path[0] == "labels":
                    return filters.label_adaptor(lease.labels, path[1:])
                return "", False

            if match.match(adapt):
                found.append(lease)
        return found

    def add_resource(self, ns: str, lease_id: str, rtype: str, rid: str) -> None:
        _check_resource(rtype, rid)
        with self.db.tx() as cur:
            _require(cur, ns, lease_id)
            cur.execute(
                "INSERT OR IGNORE INTO lease_resources (ns, lease, type, id) VALUES (?, ?, ?, ?)",
                (ns, lease_id, rtype, rid),
            )

    def delete_resource(self, ns: str, lease_id: str, rtype: str, rid: str) -> None:
        _check_resource(rtype, rid)
        with self.db.tx() as cur:
            _require(cur, ns, lease_id)
            cur.execute(
                "DELETE FROM lease_resources WHERE ns = ? AND lease = ? AND type = ? AND id = ?",
                (ns, lease_id, rtype, rid),
            )

    def list_resources(self, ns: str, lease_id: str) -> list[tuple[str, str]]:
        """(id, type) pairs."""
        with self.db.read() as cur:
            _require(cur, ns, lease_id)
            rows = cur.execute(
                "SELECT id, type FROM lease_resources WHERE ns = ? AND lease = ? ORDER BY type, id",
                (ns, lease_id),
            ).fetchall()
        return [(rid, rtype) for rid, rtype in rows]
