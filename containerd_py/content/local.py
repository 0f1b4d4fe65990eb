"""containerd's local content store (its content/local), in containerd's own on-disk layout.

Under the root (the daemon passes `<root>/io.containerd.content.v1.content`):

    blobs/sha256/<hex>       committed blobs, read-only, named by their digest. A blob only
                             appears by renaming a complete, verified, fsynced ingest `data`
                             file, so a killed daemon never leaves a partial one here.
    ingest/<sha256(ref)>/    one write in progress (the ref is hashed to a fixed length):
        ref                  the ref itself
        data                 the bytes written so far; its size is where a new writer resumes
        startedat            RFC 3339 timestamps as Go writes them; updatedat is rewritten on
        updatedat            close, and the data file's mtime counts when it is newer
        total                the expected size, if the first writer was told it
    ingest/<other name>      temporaries: ingests being created or removed (renamed away first)

Every ingest directory appears complete (built under a temporary name, then renamed), so the
store's start only has to drop temporaries and directories whose data a commit had already
moved into blobs/. Labels are not kept here: the metadata database has them per namespace.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

from containerd_py.content.digests import sha256_hex
from containerd_py.content.locks import RefLocks
from containerd_py.content.model import Info, Status
from containerd_py.content.ondisk import (
    TMP_SUFFIX,
    format_time,
    fsync_dir,
    parse_time,
    sha256_prefix,
    write_atomic,
    write_file,
)
from containerd_py.content.writer import Writer
from containerd_py.errdefs import AlreadyExists, InvalidArgument, NotFound

if TYPE_CHECKING:
    from _hashlib import HASH

# The store's whole API, as the daemon imports it from here.
__all__ = ["Info", "LocalStore", "Status", "Writer"]

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[a-f0-9]{64}")


class LocalStore:
    # How long writer() waits for another writer of the same ref before Unavailable.
    lock_wait = 0.5

    def __init__(self, root: str) -> None:
        self.root = root
        self._blobs = os.path.join(root, "blobs", "sha256")
        self._ingest = os.path.join(root, "ingest")
        os.makedirs(self._blobs, exist_ok=True)
        os.makedirs(self._ingest, exist_ok=True)
        self._locks = RefLocks()
        self._clean_ingest()

    # -- blobs

    def blob_path(self, digest: str) -> str:
        return os.path.join(self._blobs, sha256_hex(digest))

    def info(self, digest: str) -> Info:
        try:
            st = os.stat(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}") from None
        return _info(digest, st)

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}") from None

    def read_at(self, digest: str, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset`; fewer at the end of the blob."""
        if offset < 0 or size < 0:
            raise InvalidArgument(f"read of {size} bytes at offset {offset}")
        with self.open(digest) as f:
            return os.pread(f.fileno(), size, offset)

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}") from None

    def walk(self) -> Iterator[Info]:
        with os.scandir(self._blobs) as entries:
            for entry in entries:
                if not _HEX64.fullmatch(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # deleted while walking
                    continue
                yield _info("sha256:" + entry.name, st)

    # -- ingests

    def writer(self, ref: str, total: int = 0, expected: str = "") -> Writer:
        """Begin the write `ref`, or resume it where its data file ends. One writer per ref:
        a second gets Unavailable until the first is closed, committed or aborted."""
        if not ref:
            raise InvalidArgument("ref must not be empty")
        self._locks.acquire(ref, self.lock_wait)
        try:
            if expected and os.path.exists(self.blob_path(expected)):
                raise AlreadyExists(f"content {expected}")
            return self._open_writer(ref, total, expected)
        except BaseException:
            self._locks.release(ref)
            raise

    def status(self, ref: str) -> Status:
        try:
            return _read_status(self._ingest_path(ref))
        except FileNotFoundError:
            raise NotFound(f'ingest ref "{ref}"') from None

    def list_statuses(self) -> list[Status]:
        statuses = []
        with os.scandir(self._ingest) as entries:
            for entry in entries:
                if not _HEX64.fullmatch(entry.name):
                    continue
                try:
                    statuses.append(_read_status(entry.path))
                except FileNotFoundError:  # committed or aborted while listing
                    continue
                except ValueError as err:  # one corrupt ingest must not hide the others
                    log.warning("skipping the unreadable ingest %s: %s", entry.path, err)
        return sorted(statuses, key=lambda s: s.ref)

    def abort(self, ref: str) -> None:
        """Drop the ingest `ref`. Like containerd this does not wait for its writer, whose
        commit then fails with NotFound."""
        try:
            self._remove_ingest(self._ingest_path(ref))
        except FileNotFoundError:
            raise NotFound(f'ingest ref "{ref}"') from None

    # -- internals

    def _ingest_path(self, ref: str) -> str:
        return os.path.join(self._ingest, hashlib.sha256(ref.encode()).hexdigest())

    def _open_writer(self, ref: str, total: int, expected: str) -> Writer:
        path = self._ingest_path(ref)
        resumed = self._resume(path, ref, total) if os.path.isdir(path) else None
        if resumed is None:
            now = time.time_ns()
            self._create_ingest(path, ref, total, now)
            resumed = hashlib.sha256(), Status(ref, 0, total, "", now, now)
        hasher, status = resumed
        release = partial(self._locks.release, ref)
        return Writer(path, hasher, replace(status, expected=expected), self._install, release)

    def _resume(self, path: str, ref: str, total: int) -> tuple[HASH, Status] | None:
        """The state of an existing ingest, its digest recomputed from the data; None (after
        removing it) if it cannot be continued, and the write starts over as containerd does."""
        try:
            status = _read_status(path)
            if status.ref != ref:
                raise ValueError(f"ref key does not match: {ref} != {status.ref}")
            if total > 0 and status.total > 0 and total != status.total:
                raise ValueError(f"provided total differs from status: {total} != {status.total}")
            hasher, offset = sha256_prefix(os.path.join(path, "data"), status.offset)
            if total > 0 and status.total == 0:
                write_atomic(os.path.join(path, "total"), str(total).encode())
            return hasher, replace(status, offset=offset, total=status.total or total)
        except (FileNotFoundError, ValueError) as err:  # incomplete, corrupt or another write
            log.info("failed to resume the ingest %s (%s); starting it over", path, err)
            try:
                self._remove_ingest(path)
            except FileNotFoundError:
                pass
            return None

    def _create_ingest(self, path: str, ref: str, total: int, now: int) -> None:
        tmp = tempfile.mkdtemp(dir=self._ingest, prefix=os.path.basename(path) + ".")
        os.chmod(tmp, 0o755)
        stamp = format_time(now)
        write_file(os.path.join(tmp, "ref"), ref.encode())
        write_file(os.path.join(tmp, "startedat"), stamp)
        write_file(os.path.join(tmp, "updatedat"), stamp)
        if total > 0:
            write_file(os.path.join(tmp, "total"), str(total).encode())
        open(os.path.join(tmp, "data"), "xb").close()
        fsync_dir(tmp)
        os.rename(tmp, path)
        fsync_dir(self._ingest)

    def _remove_ingest(self, path: str) -> None:
        """Rename, then delete: a crash halfway leaves a temporary, never a broken ingest."""
        doomed = f"{path}.{os.urandom(4).hex()}{TMP_SUFFIX}"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def _install(self, ingest: str, digest: str) -> None:
        """Move a verified, fsynced ingest's data into blobs/ and drop the ingest."""
        target = self.blob_path(digest)
        if os.path.exists(target):
            self._remove_ingest(ingest)
            raise AlreadyExists(f"content {digest}")
        data = os.path.join(ingest, "data")
        now = time.time_ns()
        os.utime(data, ns=(now, now))
        # Read-only, keeping the read bits the creation umask allowed, as containerd does.
        os.chmod(data, os.stat(data).st_mode & 0o444)
        os.rename(data, target)
        fsync_dir(self._blobs)
        self._remove_ingest(ingest)

    def _clean_ingest(self) -> None:
        """Drop what a killed daemon left half done: temporaries, temporary metadata files, and
        ingests whose data a commit had already moved into blobs/."""
        with os.scandir(self._ingest) as entries:
            for entry in entries:
                if not (_HEX64.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)):
                    _remove_any(entry.path)
                    continue
                names = os.listdir(entry.path)
                if "data" not in names or "ref" not in names:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    continue
                for name in names:
                    if name.endswith(TMP_SUFFIX):
                        os.unlink(os.path.join(entry.path, name))


def _info(digest: str, st: os.stat_result) -> Info:
    return Info(digest, st.st_size, st.st_mtime_ns, st.st_atime_ns)


def _read_status(path: str) -> Status:
    """An ingest's status from disk; FileNotFoundError if it is gone or incomplete."""
    data = os.stat(os.path.join(path, "data"))
    with open(os.path.join(path, "ref"), "rb") as f:
        ref = f.read().decode()
    with open(os.path.join(path, "startedat"), "rb") as f:
        started_at = parse_time(f.read())
    with open(os.path.join(path, "updatedat"), "rb") as f:
        updated_at = parse_time(f.read())
    # updatedat is only written on close; the data's mtime is fresher during a write.
    updated_at = max(updated_at, data.st_mtime_ns)
    return Status(ref, data.st_size, _read_total(path), "", started_at, updated_at)


def _read_total(path: str) -> int:
    try:
        with open(os.path.join(path, "total"), "rb") as f:
            return int(f.read())
    except (FileNotFoundError, ValueError):  # not given, or corrupt: unknown, as in containerd
        return 0


def _remove_any(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.unlink(path)
