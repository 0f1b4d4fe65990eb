"""The registry authorizer (containerd's `docker/authorizer.go` and `docker/auth`).

A request goes out anonymously until a host answers 401. Its `WWW-Authenticate` challenges
(Bearer preferred, then Basic) are remembered per host; from then on requests to that host
carry `Basic <user:secret>` or `Bearer <token>`. A token comes from a GET of the challenge's
realm with `service` and every `scope` (the request's, e.g. `repository:library/busybox:pull`,
and the challenge's), with basic auth when there are credentials for the registry host,
anonymously otherwise (Docker's token spec). The challenge's own `scope` is added only when
the refused request is sent again (containerd adds the first challenge's to every later
request, of any repository). Tokens are cached per host, realm, service and scopes until
they expire (`expires_in`, 60 s by default, as the spec says); a cached token serves any
request whose scopes it covers.
"""

import base64
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import httpx

from containerd_py.errdefs import Unavailable

from .errors import AuthorizationFailed, describe, read_error_body

Credentials = Callable[[str], tuple[str, str] | None]
"""registry host (as in the request URL: `registry-1.docker.io`, `127.0.0.1:5000`) ->
(username, secret), or None for anonymous access."""

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PRIORITY = {"bearer": 0, "digest": 1, "basic": 2}  # containerd's order: token > digest > basic
_DEFAULT_EXPIRES_IN = 60


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "bearer", "basic", "digest"
    params: dict[str, str] = field(default_factory=dict)  # keys lowercase


def _skip(s: str, i: int, chars: str) -> int:
    while i < len(s) and s[i] in chars:
        i += 1
    return i


def _value(s: str, i: int) -> tuple[str, int]:
    """A token or a quoted-string (with backslash escapes) at `i`; the value and the end."""
    if i < len(s) and s[i] == '"':
        out, i = [], i + 1
        while i < len(s) and s[i] != '"':
            if s[i] == "\\" and i + 1 < len(s):
                i += 1
            out.append(s[i])
            i += 1
        return "".join(out), i + 1
    m = _TOKEN_RE.match(s, i)
    return (m.group(), m.end()) if m else ("", i)


def _parse_header(header: str) -> list[Challenge]:
    """One header's challenges: `Bearer realm="…",service="…", Basic realm="…"`."""
    out: list[Challenge] = []
    i = 0
    while True:
        i = _skip(header, i, " \t,")
        m = _TOKEN_RE.match(header, i)
        if m is None:
            return out
        j = _skip(header, m.end(), " \t")
        if out and j < len(header) and header[j] == "=":
            value, i = _value(header, _skip(header, j + 1, " \t"))
            out[-1].params[m.group().lower()] = value
        else:
            out.append(Challenge(m.group().lower()))
            i = m.end()


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """The known challenges of all `WWW-Authenticate` headers, Bearer first."""
    found = [c for h in headers for c in _parse_header(h) if c.scheme in _PRIORITY]
    return sorted(found, key=lambda c: _PRIORITY[c.scheme])


@dataclass
class _Token:
    value: str
    expires: float


class Authorizer:
    """Thread-safe: layers may be fetched from several threads with one authorizer."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        headers: Sequence[tuple[str, str]] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = credentials
        self._headers = list(headers)
        self._clock = clock
        # One lock for all: a token is fetched once while concurrent requests wait for it.
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, str, str, frozenset[str]], _Token] = {}

    def credentials(self, host: str) -> tuple[str, str] | None:
        creds = self._credentials(host) if self._credentials else None
        return creds if creds and creds[0] and creds[1] else None

    def authorization(self, client: httpx.Client, host: str, scopes: Sequence[str]) -> str | None:
        """The `Authorization` value for a request to `host`, None before any challenge."""
        with self._lock:
            challenge = self._challenges.get(host)
            if challenge is None:
                return None
            if challenge.scheme == "bearer":
                return "Bearer " + self._token(client, host, challenge, scopes)
            creds = self.credentials(host)
            if challenge.scheme != "basic" or creds is None:
                return None
            return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()

    def challenge(self, host: str, resp: httpx.Response, sent: str | None) -> list[str] | None:
        """Take a 401 response's challenges (after `sent` was the request's authorization).
        None if sending the request again cannot help, else the scopes the challenge asks
        for, to add to the request's for the retry."""
        with self._lock:
            for c in parse_challenges(resp.headers.get_list("www-authenticate")):
                if c.scheme == "bearer":
                    if not c.params.get("realm"):
                        raise AuthorizationFailed("no realm specified for token auth challenge")
                    self._challenges[host] = c
                    if sent and sent.startswith("Bearer "):  # expired or revoked: forget it
                        token = sent.removeprefix("Bearer ")
                        for key in [k for k, t in self._tokens.items() if t.value == token]:
                            del self._tokens[key]
                    return c.params.get("scope", "").split()
                if c.scheme == "basic" and self.credentials(host) is not None:
                    self._challenges[host] = c
                    # the same credentials again would be refused again
                    return None if (sent or "").startswith("Basic ") else []
            return None

    def _token(self, client: httpx.Client, host: str, c: Challenge, scopes: Sequence[str]) -> str:
        realm, service = c.params["realm"], c.params.get("service", "")
        wanted = frozenset(scopes)
        now = self._clock()
        for (h, r, s, granted), cached in self._tokens.items():
            if (h, r, s) == (host, realm, service) and granted >= wanted and cached.expires > now:
                return cached.value
        creds = self.credentials(host)
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("scope", s) for s in sorted(wanted)
        ]
        if service:
            params.insert(0, ("service", service))
        try:
            resp = client.get(
                realm,
                params=params,
                headers=self._headers,
                auth=httpx.BasicAuth(*creds) if creds else None,
            )
        except httpx.HTTPError as e:
            raise Unavailable(f"failed to fetch token from {realm}: {e}") from e
        if not 200 <= resp.status_code < 400:
            text = describe(resp, read_error_body(resp))
            kind = "token" if creds else "anonymous token"
            raise AuthorizationFailed(f"failed to fetch {kind}: {text}")
        try:
            data = resp.json()
            # `access_token` is the OAuth name of `token`; containerd prefers it if both.
            token = str(data.get("access_token") or data.get("token") or "")
            expires_in = int(data.get("expires_in") or _DEFAULT_EXPIRES_IN)
        except (ValueError, AttributeError, TypeError) as e:
            raise AuthorizationFailed(f"unable to decode token response from {realm}") from e
        if not token:
            raise AuthorizationFailed(
                "authorization server did not include a token in the response"
            )
        # Renew a little early, so a token does not expire between here and the registry.
        self._tokens[(host, realm, service, wanted)] = _Token(token, now + expires_in * 0.9)
        return token
