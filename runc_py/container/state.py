"""A container's state under `--root` (like runc's `/run/runc/<id>/state.json`).

The status is never stored: like runc, it is read off the world each time — no init process
means stopped, an exec fifo still on disk means created, a frozen cgroup means paused, else
running. So a runc-py killed at any point leaves nothing that lies about a container.
"""

from __future__ import annotations

import os
import time

from runc_py.errors import RuntimeErr
from stacklab import jsonfast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
# runc's ^[\w+-\.]+$, as a set: `re` would cost every runc-py start its import
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def validate_id(cid: str) -> None:
    if not cid or not _ID_CHARS.issuperset(cid) or cid in (".", ".."):
        raise RuntimeErr("invalid container ID format")


def rfc3339(ns: int) -> str:
    """Go's time.RFC3339Nano in UTC, as runc prints `created`."""
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    f = f"{frac:09d}".rstrip("0")
    return f"{base}.{f}Z" if f else f"{base}Z"


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a live init from a recycled pid. None if gone/zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class State:
    """What state.json holds: enough to find, join, signal and tear down the container."""

    def __init__(
        self,
        *,
        id: str,
        pid: int,
        pid_start: int,
        bundle: str,
        rootfs: str,
        created_ns: int,
        owner: str = "",
        annotations: dict[str, str] | None = None,
        namespaces: dict[str, str] | None = None,  # type -> /proc/PID/ns/... to join
        cgroup: dict[str, Any] | None = None,  # for cgroups.from_state()
        hooks: dict[str, Any] | None = None,  # poststart and poststop
        process: dict[str, Any] | None = None,  # the defaults of exec (env, caps, user, ...)
        seccomp: dict[str, Any] | None = None,
        creating: bool = False,  # still inside `create` (its hooks running)
    ) -> None:
        self.id, self.pid, self.pid_start = id, pid, pid_start
        self.bundle, self.rootfs, self.created_ns, self.owner = bundle, rootfs, created_ns, owner
        self.annotations = annotations or {}
        self.namespaces = namespaces or {}
        self.cgroup = cgroup or {}
        self.hooks = hooks or {}
        self.process = process or {}
        self.seccomp = seccomp
        self.creating = creating

    def save(self, root: str) -> None:
        """Atomically: temp file, fsync, rename (a reader never sees half a state)."""
        d = os.path.join(root, self.id)
        tmp = os.path.join(d, f".{STATE_FILE}.tmp")
        data = jsonfast.dumps(vars(self)).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(d, STATE_FILE))

    def dir(self, root: str) -> str:
        return os.path.join(root, self.id)

    def status_alive(self) -> bool:
        """Is our init still running (not a zombie, not a recycled pid)?"""
        return self.pid > 0 and proc_start_time(self.pid) == self.pid_start

    def status(self, root: str) -> str:
        if not self.status_alive():
            return "stopped"
        if os.path.exists(os.path.join(root, self.id, EXEC_FIFO)):
            return "creating" if self.creating else "created"
        if self.cgroup:
            from runc_py import cgroups

            try:
                if cgroups.from_state(self.cgroup).frozen():
                    return "paused"
            except (OSError, cgroups.CgroupError):
                pass
        return "running"

    def oci_state(self, root: str, status: str | None = None) -> dict[str, Any]:
        """The runtime-spec state, as hooks get it on stdin."""
        st = status or self.status(root)
        out: dict[str, Any] = {"ociVersion": "1.0.2-dev", "id": self.id, "status": st}
        if st != "stopped":
            out["pid"] = self.pid  # omitted when stopped, as runc's `omitempty` does
        out["bundle"] = self.bundle
        if self.annotations:
            out["annotations"] = self.annotations
        return out

    def runc_state(self, root: str) -> dict[str, Any]:
        """What `runc state` prints: the spec's fields plus rootfs, created and owner."""
        st = self.status(root)
        out: dict[str, Any] = {
            "ociVersion": "1.0.2-dev",
            "id": self.id,
            "pid": 0 if st == "stopped" else self.pid,
            "status": st,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": rfc3339(self.created_ns),
        }
        if self.annotations:
            out["annotations"] = self.annotations
        out["owner"] = self.owner
        return out


def load(root: str, cid: str) -> State:
    validate_id(cid)
    try:
        with open(os.path.join(root, cid, STATE_FILE), "rb") as f:
            return State(**jsonfast.loads(f.read()))
    except FileNotFoundError:
        raise RuntimeErr("container does not exist") from None
    except (ValueError, TypeError) as e:
        raise RuntimeErr(f"container {cid}: corrupt state: {e}") from None


def list_ids(root: str) -> list[str]:
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    return [n for n in names if os.path.exists(os.path.join(root, n, STATE_FILE))]
