"""The lease a request carries (`containerd-lease` metadata): what it creates is added to it,
so the collector leaves it alone until the lease is deleted."""

import sqlite3

from containerd_py.errdefs import NotFound

CONTENT = "content"
INGESTS = "ingests"


def snapshots_type(snapshotter: str) -> str:
    return f"snapshots/{snapshotter}"


def add(cur: sqlite3.Cursor, ns: str, lease: str | None, rtype: str, rid: str) -> None:
    if not lease:
        return
    if not cur.execute("SELECT 1 FROM leases WHERE ns = ? AND id = ?", (ns, lease)).fetchone():
        raise NotFound("lease does not exist")
    cur.execute(
        "INSERT OR IGNORE INTO lease_resources (ns, lease, type, id) VALUES (?, ?, ?, ?)",
        (ns, lease, rtype, rid),
    )
