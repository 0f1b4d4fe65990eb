"""HTTP for a resolver: one pooled httpx client per TLS configuration, authorization, retries.

`request()` returns a streaming response (the caller closes it): a 401 is answered once by
the authorizer and the request re-sent; connection errors, 408, 429 and 5xx (but 501) are
retried with exponential backoff while the body can be sent again. A response that is still
an error after the retries is returned, for the caller to turn into the right error.
"""

import ssl
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeAlias

import httpx

from containerd_py.errdefs import ContainerdError, InvalidArgument, Unavailable

from .auth import Authorizer, Credentials
from .errors import AuthorizationFailed, describe, read_error_body
from .hosts import RegistryHost

USER_AGENT = "containerd-py/0.1"
CHUNK_SIZE = 1 << 20
# connect as containerd's dialer; a read may wait long on a slow registry or a big blob
TIMEOUT = httpx.Timeout(300.0, connect=30.0)
MAX_REDIRECTS = 10  # as containerd: blobs are often redirected to a CDN or object store

Content: TypeAlias = bytes | Iterator[bytes] | None
_TLSKey: TypeAlias = tuple[tuple[str, ...], tuple[tuple[str, str], ...], bool]


def _retryable(status: int) -> bool:
    return status in (408, 429) or (status >= 500 and status != 501)


def _ssl_context(key: _TLSKey) -> ssl.SSLContext:
    ca_certs, client_certs, skip_verify = key
    ctx = ssl.create_default_context()  # the system roots; a host's `ca` adds to them
    try:
        for ca in ca_certs:
            ctx.load_verify_locations(cafile=ca)
        for cert, private_key in client_certs:
            ctx.load_cert_chain(cert, private_key or None)
    except (OSError, ssl.SSLError) as e:
        raise InvalidArgument(f"unable to load TLS certificates {key[:2]}: {e}") from e
    if skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Session:
    def __init__(
        self,
        credentials: Credentials | None = None,
        headers: Mapping[str, str] | None = None,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self.authorizer = Authorizer(credentials, [("User-Agent", self.headers["User-Agent"])])
        self.retries = retries
        self.backoff = backoff
        self._clients: dict[_TLSKey, httpx.Client] = {}
        self._lock = threading.Lock()

    def client(self, host: RegistryHost) -> httpx.Client:
        key = (host.ca_certs, host.client_certs, host.skip_verify)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = httpx.Client(
                    verify=_ssl_context(key),
                    timeout=TIMEOUT,
                    follow_redirects=True,
                    max_redirects=MAX_REDIRECTS,
                )
            return self._clients[key]

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    def sleep_before_retry(self, attempt: int) -> None:
        time.sleep(self.backoff * 2**attempt)

    def request(
        self,
        host: RegistryHost,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        scopes: Sequence[str] = (),
        content: Content = None,
        authorize: bool = True,
    ) -> httpx.Response:
        replayable = not isinstance(content, Iterator)
        attempt = 0
        while True:
            try:
                resp = self._authorized(host, method, url, headers, scopes, content, authorize)
            except httpx.TransportError as e:
                if attempt >= self.retries or not replayable:
                    raise Unavailable(f"{method} {url}: {type(e).__name__}: {e}") from e
            except httpx.HTTPError as e:  # too many redirects, an undecodable body
                raise ContainerdError(f"{method} {url}: {type(e).__name__}: {e}") from e
            else:
                if not (_retryable(resp.status_code) and replayable and attempt < self.retries):
                    return resp
                resp.close()
            self.sleep_before_retry(attempt)
            attempt += 1

    def _authorized(
        self,
        host: RegistryHost,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        scopes: Sequence[str],
        content: Content,
        authorize: bool,
    ) -> httpx.Response:
        client = self.client(host)
        auth = self.authorizer.authorization(client, host.host, scopes) if authorize else None
        resp = self._send(client, host, method, url, headers, content, auth)
        if resp.status_code != 401 or not authorize:
            return resp
        extra = self.authorizer.challenge(host.host, resp, auth)
        if extra is None:
            text = describe(resp, read_error_body(resp))
            if self.authorizer.credentials(host.host) is None:
                text += f" (no credentials for {host.host})"
            raise AuthorizationFailed(f"authorization failed: {text}")
        resp.close()
        if isinstance(content, Iterator):  # the body is spent: it cannot go out again
            raise AuthorizationFailed(f"{method} {url}: 401 Unauthorized after sending the body")
        auth = self.authorizer.authorization(client, host.host, [*scopes, *extra])
        resp = self._send(client, host, method, url, headers, content, auth)
        if resp.status_code == 401:
            raise AuthorizationFailed(
                f"authorization failed: {describe(resp, read_error_body(resp))}"
            )
        return resp

    def _send(
        self,
        client: httpx.Client,
        host: RegistryHost,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        content: Content,
        auth: str | None,
    ) -> httpx.Response:
        merged = httpx.Headers([*self.headers.items(), *host.headers])
        merged.update(headers or {})
        if auth:
            merged["Authorization"] = auth
        request = client.build_request(method, url, headers=merged, content=content)
        return client.send(request, stream=True)
