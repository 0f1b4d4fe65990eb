"""The pusher (containerd's `remotes/docker/pusher.go`), to the first `push` host.

A HEAD first: content the registry already has is not sent again (a manifest under a tag
only counts if the tag names that digest). A manifest or index is PUT to
`/manifests/<tag or digest>` with its media type as Content-Type; a blob is a monolithic
upload: POST `/blobs/uploads/`, then PUT of the whole body to the Location it gives, with
`?digest=`. Bodies are streamed in 1 MiB chunks; the registry checks the digest.
"""

from collections.abc import Iterator, Mapping
from contextlib import closing
from typing import Any, Protocol

import httpx

from containerd_py.errdefs import FailedPrecondition

from .. import mediatypes
from .errors import UnexpectedStatus, status_error
from .fetcher import check_descriptor
from .hosts import PUSH
from .repository import Repository
from .session import CHUNK_SIZE


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _chunks(reader: Readable, size: int, digest: str) -> Iterator[bytes]:
    """Exactly `size` bytes of `reader`, 1 MiB at a time."""
    left = size
    while left:
        chunk = reader.read(min(CHUNK_SIZE, left))
        if not chunk:
            raise FailedPrecondition(f"short read: {size - left} of {size} bytes for {digest}")
        left -= len(chunk)
        yield chunk


class Pusher:
    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self._host = repo.hosts_with(PUSH)[0]

    def push(
        self, desc: Mapping[str, Any], content: bytes | Readable, *, by_digest: bool = False
    ) -> bool:
        """Push `content` (bytes, or a reader giving `desc["size"]` bytes) as `desc`. A
        manifest goes under the reference's tag unless `by_digest` (or the reference names
        another digest). False if the registry already had it."""
        media_type, digest, size = check_descriptor(desc)
        if isinstance(content, bytes) and len(content) != size:
            raise FailedPrecondition(f"{len(content)} bytes given for {digest} of size {size}")
        body = content if isinstance(content, bytes) else _chunks(content, size, digest)
        if mediatypes.is_index(media_type) or mediatypes.is_manifest(media_type):
            return self._push_manifest(media_type, digest, size, body, by_digest)
        return self._push_blob(digest, size, body)

    def _exists(self, parts: tuple[str, str], media_type: str, digest: str) -> bool:
        headers = {"Accept": f"{media_type}, */*"}
        with closing(
            self._repo.request(self._host, "HEAD", *parts, headers=headers, push=True)
        ) as resp:
            if resp.status_code == 404:
                return False
            if resp.status_code != 200:
                raise status_error(resp)
            # a tag may name another manifest: only the same digest counts
            return parts[1] == digest or resp.headers.get("docker-content-digest") == digest

    def _push_manifest(
        self,
        media_type: str,
        digest: str,
        size: int,
        body: bytes | Iterator[bytes],
        by_digest: bool,
    ) -> bool:
        ref = self._repo.ref
        target = ref.tag if ref.tag and not by_digest and ref.digest in ("", digest) else digest
        if self._exists(("manifests", target), media_type, digest):
            return False
        headers = {"Content-Type": media_type, "Content-Length": str(size)}
        resp = self._repo.request(
            self._host, "PUT", "manifests", target, headers=headers, content=body, push=True
        )
        self._check_put(resp, digest)
        return True

    def _push_blob(self, digest: str, size: int, body: bytes | Iterator[bytes]) -> bool:
        if self._exists(("blobs", digest), "application/octet-stream", digest):
            return False
        host = self._host
        with closing(self._repo.request(host, "POST", "blobs", "uploads", "", push=True)) as resp:
            if resp.status_code == 201:  # mounted or already there
                return False
            if resp.status_code not in (200, 202, 204):
                raise status_error(resp)
            location = resp.headers.get("location", "")
        if not location:
            raise UnexpectedStatus("upload started without a Location", resp.status_code)
        if location.startswith("/"):
            url = httpx.URL(f"{host.scheme}://{host.host}{location}")
        else:
            url = httpx.URL(location if "://" in location else f"{host.scheme}://{location}")
        # containerd drops the authorization when the upload moves to another host
        same_host = (url.scheme, url.netloc.decode()) == (host.scheme, host.host)
        put = self._repo.session.request(
            host,
            "PUT",
            str(url.copy_add_param("digest", digest)),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            scopes=self._repo.scopes(push=True),
            content=body,
            authorize=same_host,
        )
        self._check_put(put, digest)
        return True

    @staticmethod
    def _check_put(resp: httpx.Response, digest: str) -> None:
        with closing(resp):
            if resp.status_code not in (200, 201, 202, 204):
                raise status_error(resp)
            got = resp.headers.get("docker-content-digest", digest)
            if got != digest:
                raise FailedPrecondition(f"registry stored {got}, expected {digest}")
