"""The fetcher (containerd's `remotes/docker/fetcher.go` and `httpreadseeker.go`).

`fetch(desc)` opens the content on the first `pull` host that has it (manifests and indexes at
`/manifests/<digest>`, the rest at `/blobs/<digest>`, redirects followed) and returns a
`BlobStream`: iterate it for 1 MiB chunks, or `read()` it. A connection lost mid-body is
resumed with a `Range` request at the same offset, with backoff.

The fetcher verifies: a manifest, index or config larger than MAX_MANIFEST_SIZE is refused
before any byte of it is read (NotFound, as containerd's resolver), a body longer than the
descriptor's size is cut off at once, and at the end the size and digest must match
(FailedPrecondition, with the words of containerd's content-store commit). The last chunk
is only handed out once the digest has been checked, so a caller that writes every chunk
it gets and commits after the loop never commits bad content — but it must still discard
what it wrote when the stream raises.
"""

import hashlib
from collections.abc import Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from containerd_py.errdefs import (
    ContainerdError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)

from .. import mediatypes
from ..reference import validate_digest
from .errors import UnexpectedStatus, status_error
from .hosts import PULL, RegistryHost
from .repository import Repository
from .session import CHUNK_SIZE, Session

# containerd's MaxManifestSize: "4 * 1048 * 1048", a little over 4 MiB (4 << 20), kept as is.
MAX_MANIFEST_SIZE = 4 * 1048 * 1048

Progress = Callable[[Mapping[str, Any], int, int], None]
"""progress(desc, bytes done, total): after every chunk."""


def check_descriptor(desc: Mapping[str, Any]) -> tuple[str, str, int]:
    """(mediaType, digest, size) of a descriptor, validated: the digest goes into a URL."""
    media_type, digest, size = desc.get("mediaType"), desc.get("digest"), desc.get("size")
    if not isinstance(media_type, str) or not isinstance(digest, str):
        raise InvalidArgument(f"descriptor needs a mediaType and a digest: {dict(desc)}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"descriptor needs a size >= 0: {dict(desc)}")
    return media_type, validate_digest(digest), size


class BlobStream:
    """The verified content of one descriptor; close it (or use `with`) when done."""

    def __init__(
        self,
        desc: Mapping[str, Any],
        opener: Callable[[int], httpx.Response],
        resp: httpx.Response,
        session: Session,
        progress: Progress | None,
    ) -> None:
        self.desc = desc
        _, self.digest, self.size = check_descriptor(desc)
        self._open = opener
        self._resp = resp
        self._session = session
        self._progress = progress
        self._chunks = self._verified()
        self._buffer = bytearray()

    def __enter__(self) -> "BlobStream":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._resp.close()
        self._chunks.close()

    def __iter__(self) -> Iterator[bytes]:
        if self._buffer:
            yield bytes(self._buffer)
            self._buffer.clear()
        yield from self._chunks

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left if negative); b"" at the end."""
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def _raw(self) -> Iterator[bytes]:
        """The body as it arrives, from offset 0; reopened at the offset reached when the
        connection breaks (if the server ignores the Range, the start is skipped)."""
        done, attempt = 0, 0
        while True:
            skip = done if self._resp.status_code != 206 else 0
            try:
                for piece in self._resp.iter_bytes():
                    piece, skip = piece[skip:], max(0, skip - len(piece))
                    if piece:
                        done += len(piece)
                        attempt = 0
                        yield piece
                return
            except httpx.TransportError as e:
                self._resp.close()
                if attempt >= self._session.retries:
                    raise Unavailable(f"fetching {self.digest}: {type(e).__name__}: {e}") from e
                self._session.sleep_before_retry(attempt)
                attempt += 1
                self._resp = self._open(done)

    def _verified(self) -> Generator[bytes, None, None]:
        """CHUNK_SIZE chunks of the body; the last one only once size and digest match."""
        h = hashlib.new(self.digest.partition(":")[0])
        done, buffer, pending = 0, bytearray(), b""
        for piece in self._raw():
            done += len(piece)
            if done > self.size:
                raise FailedPrecondition(
                    f"unexpected commit size {done}+, expected {self.size} for {self.digest}"
                )
            h.update(piece)
            buffer += piece
            while len(buffer) >= CHUNK_SIZE:
                if pending:
                    yield pending
                pending = bytes(buffer[:CHUNK_SIZE])
                del buffer[:CHUNK_SIZE]
                self._report(done)
        if done != self.size:
            raise FailedPrecondition(f"unexpected commit size {done}, expected {self.size}")
        actual = f"{self.digest.partition(':')[0]}:{h.hexdigest()}"
        if actual != self.digest:
            raise FailedPrecondition(f"unexpected commit digest {actual}, expected {self.digest}")
        self._report(done)
        for chunk in (pending, bytes(buffer)):
            if chunk:
                yield chunk

    def _report(self, done: int) -> None:
        if self._progress is not None:
            self._progress(self.desc, done, self.size)


class Fetcher:
    def __init__(self, repo: Repository, progress: Progress | None = None) -> None:
        self._repo = repo
        self._progress = progress

    def fetch(self, desc: Mapping[str, Any]) -> BlobStream:
        """Open the content of `desc` (`mediaType`, `digest`, `size`)."""
        media_type, digest, size = check_descriptor(desc)
        limited = mediatypes.is_manifest_endpoint(media_type) or mediatypes.is_config(media_type)
        if limited and size > MAX_MANIFEST_SIZE:
            raise NotFound(f"rejecting {size} byte manifest for {self._repo.ref}")
        endpoint = "manifests" if mediatypes.is_manifest_endpoint(media_type) else "blobs"
        first_error: ContainerdError | None = None
        for host in self._repo.hosts_with(PULL):

            def opener(offset: int, host: RegistryHost = host) -> httpx.Response:
                return self._open(host, endpoint, media_type, digest, offset)

            try:
                resp = opener(0)
            except ContainerdError as e:
                first_error = first_error or e
                continue
            length = resp.headers.get("content-length", "")
            if length.isdigit() and "content-encoding" not in resp.headers:
                if limited and int(length) > MAX_MANIFEST_SIZE:
                    resp.close()
                    raise NotFound(f"rejecting {length} byte manifest for {self._repo.ref}")
                if int(length) != size:
                    resp.close()
                    raise FailedPrecondition(
                        f"unexpected commit size {length}, expected {size} for {digest}"
                    )
            return BlobStream(desc, opener, resp, self._repo.session, self._progress)
        if first_error is None or isinstance(first_error, NotFound):
            raise NotFound(
                f"could not fetch content descriptor {digest} ({media_type}) from remote"
            ) from first_error
        raise first_error

    def _open(
        self, host: RegistryHost, endpoint: str, media_type: str, digest: str, offset: int
    ) -> httpx.Response:
        headers = {"Accept": f"{media_type}, */*"}
        if offset:
            # Accept-Ranges cannot be trusted: the Content-Range of the answer is checked.
            headers["Range"] = f"bytes={offset}-"
        resp = self._repo.request(host, "GET", endpoint, digest, headers=headers)
        if resp.status_code > 299:
            raise status_error(resp)
        content_range = resp.headers.get("content-range", "")
        if resp.status_code == 206 and not content_range.startswith(f"bytes {offset}-"):
            resp.close()
            raise UnexpectedStatus(f"unhandled content range in response: {content_range}", 206)
        return resp
