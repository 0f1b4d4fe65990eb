"""The resolver (containerd's `remotes/docker/resolver.go`): a reference to the descriptor of
its manifest or index, and the fetchers and pushers for its repository."""

import hashlib
from collections.abc import Mapping
from contextlib import closing
from types import TracebackType
from typing import Any

import httpx

from containerd_py.errdefs import ContainerdError, NotFound

from .. import mediatypes
from ..reference import parse, validate_digest
from .auth import Credentials
from .errors import AuthorizationFailed, status_error
from .fetcher import MAX_MANIFEST_SIZE, Fetcher, Progress
from .hosts import PULL, RESOLVE, RegistryHost, RegistryHosts, configure_hosts
from .pusher import Pusher
from .repository import Repository
from .session import CHUNK_SIZE, Session

RESOLVE_ACCEPT = ", ".join(
    [
        mediatypes.DOCKER_MANIFEST,
        mediatypes.DOCKER_MANIFEST_LIST,
        mediatypes.OCI_MANIFEST,
        mediatypes.OCI_INDEX,
        "*/*",
    ]
)


def _media_type(resp: httpx.Response) -> str:
    media_type = resp.headers.get("content-type", "").partition(";")[0].strip()
    # registry.access.redhat.com served schema 1 manifests as text/plain (containerd's note)
    return mediatypes.DOCKER_MANIFEST_SCHEMA1 if media_type == "text/plain" else media_type


def _content_length(resp: httpx.Response) -> int:
    value = resp.headers.get("content-length", "")
    return int(value) if value.isdigit() and "content-encoding" not in resp.headers else -1


class Resolver:
    """Resolves, fetches and pushes through the hosts of each reference's registry.

    `hosts` maps a namespace (`docker.io`) to the endpoints to try (see `configure_hosts`);
    without it every registry is its own only host, over https but for localhost, or plain
    HTTP for all with `plain_http`. `credentials(host)` gives (user, secret) per registry
    host. `headers` go on every request; an `Accept` among them replaces the one `resolve`
    sends. Close the resolver (or use it as a context manager) to close its connections.
    """

    def __init__(
        self,
        hosts: RegistryHosts | None = None,
        credentials: Credentials | None = None,
        plain_http: bool = False,
        headers: Mapping[str, str] | None = None,
        *,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self._hosts = hosts or configure_hosts(plain_http=plain_http)
        extra = dict(headers or {})
        accept = next((k for k in extra if k.lower() == "accept"), None)
        self._accept = extra.pop(accept) if accept else RESOLVE_ACCEPT
        self._session = Session(credentials, extra, retries, backoff)

    def __enter__(self) -> "Resolver":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def _repository(self, ref: str) -> Repository:
        parsed = parse(ref)
        return Repository(self._session, parsed, self._hosts(parsed.host))

    def fetcher(self, ref: str, progress: Progress | None = None) -> Fetcher:
        """Fetches the blobs and manifests of `ref`'s repository, by descriptor."""
        return Fetcher(self._repository(ref), progress)

    def pusher(self, ref: str) -> Pusher:
        """Pushes blobs and manifests to `ref`'s repository (manifests by `ref`'s tag)."""
        return Pusher(self._repository(ref))

    def resolve(self, ref: str) -> tuple[str, dict[str, Any]]:
        """(`ref` normalized, the descriptor `{"mediaType", "digest", "size"}` it names).

        A tag is resolved only by hosts with the `resolve` capability; a digest by any `pull`
        host, at `/manifests/` then `/blobs/`. Hosts are tried in order: a 404 or an error
        moves on to the next one. Raises NotFound if none has it (or only one larger than
        MAX_MANIFEST_SIZE), else the first host's error.
        """
        repo = self._repository(ref)
        name = str(repo.ref)
        if repo.ref.digest:
            paths = [("manifests", repo.ref.digest), ("blobs", repo.ref.digest)]
            hosts = repo.hosts_with(PULL)
        else:
            paths = [("manifests", repo.ref.tag)]
            hosts = repo.hosts_with(PULL, RESOLVE)
        first_error: ContainerdError | None = None
        for parts in paths:
            for host in hosts:
                try:
                    desc = self._resolve_at(repo, host, parts)
                except ContainerdError as e:
                    first_error = first_error or e
                    continue
                if desc is not None:
                    return name, desc
        if isinstance(first_error, AuthorizationFailed):
            raise AuthorizationFailed(
                "pull access denied, repository does not exist or may require "
                f"authorization: {first_error}"
            ) from first_error
        raise first_error or NotFound(f"{name}: not found")

    def _resolve_at(
        self, repo: Repository, host: RegistryHost, parts: tuple[str, str]
    ) -> dict[str, Any] | None:
        """The descriptor from one host, None on 404. HEAD, or GET when the HEAD is refused
        or lacks Docker-Content-Digest or Content-Length."""
        accept = {"Accept": self._accept}
        digest, size, media_type = repo.ref.digest, -1, ""
        with closing(repo.request(host, "HEAD", *parts, headers=accept)) as resp:
            if resp.status_code == 404:
                return None
            if resp.status_code != 405:  # some registries do not implement HEAD
                if resp.status_code > 299:
                    raise status_error(resp)
                size, media_type = _content_length(resp), _media_type(resp)
                header = resp.headers.get("docker-content-digest", "")
                if not digest and header and size != -1:
                    digest = validate_digest(header)
        if not digest or size == -1:
            with closing(repo.request(host, "GET", *parts, headers=accept)) as resp:
                if resp.status_code == 404:
                    return None
                if resp.status_code > 299:
                    raise status_error(resp)
                media_type = _media_type(resp)
                size = _content_length(resp)
                if size <= MAX_MANIFEST_SIZE:
                    size, computed = _read_digest(resp)
                    digest = digest or computed
        if size > MAX_MANIFEST_SIZE:
            raise NotFound(f"rejecting {size} byte manifest for {repo.ref}")
        return {"mediaType": media_type, "digest": digest, "size": size}


def _read_digest(resp: httpx.Response) -> tuple[int, str]:
    """The size and sha256 of a body, reading no more than MAX_MANIFEST_SIZE + 1 bytes."""
    h, size = hashlib.sha256(), 0
    for chunk in resp.iter_bytes(CHUNK_SIZE):
        size += len(chunk)
        h.update(chunk)
        if size > MAX_MANIFEST_SIZE:
            break
    return size, "sha256:" + h.hexdigest()
