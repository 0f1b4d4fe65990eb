"""A write transaction of the local content store: an ingest's data file open for appending,
with the running digest of everything in it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from io import FileIO
from types import TracebackType
from typing import TYPE_CHECKING

from containerd_py.content.model import Status
from containerd_py.content.ondisk import format_time, sha256_prefix, write_atomic
from containerd_py.errdefs import FailedPrecondition, InvalidArgument, NotFound

if TYPE_CHECKING:
    from _hashlib import HASH


class Writer:
    """One write transaction. Not for concurrent use: one stream drives it at a time."""

    def __init__(
        self,
        path: str,
        hasher: HASH,
        status: Status,
        install: Callable[[str, str], None],
        release: Callable[[], None],
    ) -> None:
        """`path` is the ingest directory, `hasher` the sha256 of its data so far; the store
        passes `install(path, digest)` to publish a verified blob and `release()` to unlock
        the ref."""
        self._path = path
        self._install = install
        self._release = release
        # Unbuffered: every write reaches the file at once, so the data file's size is always
        # the offset, and a SIGKILL loses nothing that the offset reported.
        self._fp: FileIO | None = FileIO(os.path.join(path, "data"), "r+")
        self._fp.seek(status.offset)
        self._hash = hasher
        self._ref = status.ref
        self._offset = status.offset
        self._total = status.total
        self._expected = status.expected
        self._started_at = status.started_at
        self._updated_at = status.updated_at

    @property
    def ref(self) -> str:
        return self._ref

    def status(self) -> Status:
        return Status(
            self._ref,
            self._offset,
            self._total,
            self._expected,
            self._started_at,
            self._updated_at,
        )

    def digest(self) -> str:
        """The digest of everything written so far (still valid after commit)."""
        return "sha256:" + self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        fp = self._live("write")
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += fp.write(view[written:])
        finally:
            # Account for what reached the file even if a later part failed (ENOSPC), so
            # the offset and digest keep describing the data file.
            self._hash.update(view[:written])
            self._offset += written
            self._updated_at = time.time_ns()

    def truncate(self, size: int) -> None:
        """Cut the data back to `size` bytes (the content service sends 0 when a client
        restarts a write from the beginning)."""
        fp = self._live("truncate")
        if not 0 <= size <= self._offset:
            raise InvalidArgument(f"cannot truncate to {size}: offset is {self._offset}")
        fp.truncate(size)
        fp.seek(size)
        self._hash, self._offset = sha256_prefix(os.path.join(self._path, "data"), size)
        self._updated_at = time.time_ns()

    def commit(self, size: int = 0, expected: str = "") -> str:
        """Verify `size` (if > 0) and the digest (`expected`, else the writer's), then make
        the blob visible. The writer is closed and its ref unlocked whatever the outcome; on
        a mismatch the ingest stays, so the client can inspect, resume or abort it."""
        fp = self._live("commit")
        self._fp = None
        try:
            os.fsync(fp.fileno())
            actual = os.fstat(fp.fileno()).st_size
            if size > 0 and size != actual:
                raise FailedPrecondition(f"unexpected commit size {actual}, expected {size}")
            digest = self.digest()
            expected = expected or self._expected
            if expected and expected != digest:
                raise FailedPrecondition(f"unexpected commit digest {digest}, expected {expected}")
            try:
                self._install(self._path, digest)
            except FileNotFoundError:  # aborted while we wrote
                raise NotFound(f'ingest ref "{self._ref}"') from None
            return digest
        finally:
            fp.close()
            self._release()

    def close(self) -> None:
        """Release the ref; the ingest stays for a later writer to resume."""
        fp, self._fp = self._fp, None
        if fp is None:
            return
        try:
            os.fsync(fp.fileno())
            try:
                write_atomic(os.path.join(self._path, "updatedat"), format_time(self._updated_at))
            except FileNotFoundError:  # aborted meanwhile: nothing left to describe
                pass
        finally:
            fp.close()
            self._release()

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _live(self, action: str) -> FileIO:
        if self._fp is None:
            raise FailedPrecondition(f"cannot {action} on closed writer")
        return self._fp
