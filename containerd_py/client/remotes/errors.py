"""How a registry's HTTP answer becomes an `errdefs` error.

404 is NotFound, 429 ResourceExhausted (rate limits: Docker Hub's `toomanyrequests`), 5xx
Unavailable; a refused authorization is `AuthorizationFailed` and any other status
`UnexpectedStatus`. Both are plain containerd errors (gRPC UNKNOWN), as containerd's
`ErrInvalidAuthorization` and `remotes/errors.ErrUnexpectedStatus` are.
"""

import json
import re

import httpx

from containerd_py.errdefs import ContainerdError, NotFound, ResourceExhausted, Unavailable

_ERROR_BODY_LIMIT = 64 * 1024  # as containerd: enough for any registry's error JSON
_CHALLENGE_ERROR = re.compile(r'error="([^"]*)"')


class AuthorizationFailed(ContainerdError):
    """The registry or its token server refused the credentials (or their absence)."""


class UnexpectedStatus(ContainerdError):
    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


def read_error_body(resp: httpx.Response) -> bytes:
    """At most 64 KiB of an error response's body, then the response is closed."""
    body = b""
    try:
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) >= _ERROR_BODY_LIMIT:
                break
    except httpx.HTTPError:
        pass  # the status alone still says what went wrong
    finally:
        resp.close()
    return body[:_ERROR_BODY_LIMIT]


def server_message(body: bytes) -> str:
    """The registry's `{"errors": [{"code", "message"}]}`, as `CODE: message; …`."""
    try:
        errors = json.loads(body).get("errors") or []
        return "; ".join(f"{e.get('code', 'UNKNOWN')}: {e.get('message', '')}" for e in errors)
    except (ValueError, AttributeError, TypeError):
        return ""


def describe(resp: httpx.Response, body: bytes) -> str:
    text = f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.reason_phrase}"
    # a HEAD has no body: a 401's reason is then only in the challenge's error="…"
    challenge = _CHALLENGE_ERROR.search(resp.headers.get("www-authenticate", ""))
    message = "; ".join(filter(None, [challenge and challenge[1], server_message(body)]))
    return f"{text} - server message: {message}" if message else text


def status_error(resp: httpx.Response) -> ContainerdError:
    """The error for a response with a status > 299; reads and closes it."""
    text = describe(resp, read_error_body(resp))
    if resp.status_code == 404:
        return NotFound(f"content at {resp.request.url} not found: {text}")
    if resp.status_code == 429:
        return ResourceExhausted(text)
    if resp.status_code >= 500:
        return Unavailable(text)
    if resp.status_code in (401, 403):
        return AuthorizationFailed(f"authorization failed: {text}")
    return UnexpectedStatus(f"unexpected status: {text}", resp.status_code)
