"""containerd_py.client.remotes against a real registry (Debian's docker-registry, distribution
2.8) in its three auth modes, and against a scripted fake server for what a real registry will
not do (lie about a digest, fail with 503, break a connection, serve a huge manifest)."""

import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from containerd_py.client import platforms
from containerd_py.client.remotes import (
    MAX_MANIFEST_SIZE,
    AuthorizationFailed,
    Fetcher,
    RegistryHost,
    Resolver,
    UnexpectedStatus,
    configure_hosts,
    parse_challenges,
)
from containerd_py.errdefs import FailedPrecondition, NotFound, Unavailable
from stacklab import testimage
from tests.registry import (
    SERVICE,
    USERNAME,
    Registry,
    free_port,
    missing,
    other_arch,
    push_layout,
    push_multiplatform,
)

pytestmark = pytest.mark.interop

REPO, TAG = "library/busybox", "latest"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> testimage.ImageInfo:
    return testimage.build_image_layout(tmp_path_factory.mktemp("layout"))


def _registry(mode: str, layout: testimage.ImageInfo) -> Iterator[Registry]:
    if reason := missing():
        pytest.skip(reason)
    with Registry(mode) as registry:
        push_layout(registry.url, layout.layout, REPO, TAG, registry.credentials)
        yield registry


@pytest.fixture(scope="module")
def plain(layout: testimage.ImageInfo) -> Iterator[Registry]:
    yield from _registry("plain", layout)


@pytest.fixture(scope="module")
def basic(layout: testimage.ImageInfo) -> Iterator[Registry]:
    yield from _registry("htpasswd", layout)


@pytest.fixture(scope="module")
def token(layout: testimage.ImageInfo) -> Iterator[Registry]:
    yield from _registry("token", layout)


def read_all(fetcher: Fetcher, desc: dict[str, Any]) -> bytes:
    with fetcher.fetch(desc) as stream:
        data = b"".join(stream)
    assert (len(data), sha256(data)) == (desc["size"], desc["digest"])
    return data


def pull_image(resolver: Resolver, ref: str, layout: testimage.ImageInfo) -> None:
    """Resolve `ref` and fetch its manifest, config and layers, as the layout has them."""
    name, desc = resolver.resolve(ref)
    assert desc == {
        "mediaType": OCI_MANIFEST,
        "digest": layout.manifest_digest,
        "size": layout.manifest_size,
    }
    fetcher = resolver.fetcher(name)
    manifest = json.loads(read_all(fetcher, desc))
    assert manifest["config"]["digest"] == layout.config_digest
    assert [d["digest"] for d in manifest["layers"]] == layout.layer_digests
    for child in [manifest["config"], *manifest["layers"]]:
        read_all(fetcher, child)


# --- plain -------------------------------------------------------------------------------


def test_plain_resolve_and_fetch(plain: Registry, layout: testimage.ImageInfo) -> None:
    with Resolver() as resolver:  # 127.0.0.1 is plain HTTP by default, as in containerd 1.6
        pull_image(resolver, f"{plain.host}/{REPO}:{TAG}", layout)
        name, _ = resolver.resolve(f"{plain.host}/{REPO}")
        assert name == f"{plain.host}/{REPO}:latest"
        by_digest = f"{plain.host}/{REPO}@{layout.manifest_digest}"
        assert resolver.resolve(by_digest)[1]["digest"] == layout.manifest_digest
        with pytest.raises(NotFound):
            resolver.resolve(f"{plain.host}/{REPO}:no-such-tag")


def test_progress_and_read(plain: Registry, layout: testimage.ImageInfo) -> None:
    calls: list[tuple[str, int, int]] = []
    with Resolver() as resolver:
        fetcher = resolver.fetcher(
            f"{plain.host}/{REPO}:{TAG}",
            lambda d, done, total: calls.append((d["digest"], done, total)),
        )
        digest = layout.layer_digests[0]
        size = (layout.layout / "blobs/sha256" / digest[7:]).stat().st_size
        layer = {"mediaType": testimage.MT_LAYER, "digest": digest, "size": size}
        with fetcher.fetch(layer) as stream:
            head = stream.read(10)
            rest = stream.read()
            assert stream.read() == b""
        assert sha256(head + rest) == digest
    assert calls[-1] == (digest, size, size)
    assert [done for _, done, _ in calls] == sorted(done for _, done, _ in calls)


def test_push_skips_what_exists_and_registry_checks_digests(
    plain: Registry, layout: testimage.ImageInfo
) -> None:
    with Resolver() as resolver:
        pusher = resolver.pusher(f"{plain.host}/{REPO}:{TAG}")
        config = (layout.layout / "blobs/sha256" / layout.config_digest[7:]).read_bytes()
        desc = {
            "mediaType": testimage.MT_CONFIG,
            "digest": layout.config_digest,
            "size": len(config),
        }
        assert pusher.push(desc, config) is False  # HEAD says it is there
        data = b"not what the digest says"
        liar = {
            "mediaType": "application/octet-stream",
            "digest": sha256(b"other"),
            "size": len(data),
        }
        with pytest.raises(UnexpectedStatus, match="DIGEST_INVALID"):
            pusher.push(liar, data)


def test_big_blob_round_trip_in_chunks(plain: Registry) -> None:
    mib = 1 << 20
    data = os.urandom(3 * mib + 12345)
    desc = {"mediaType": "application/octet-stream", "digest": sha256(data), "size": len(data)}
    ref = f"{plain.host}/big:blob"
    with Resolver() as resolver:
        assert resolver.pusher(ref).push(desc, io.BytesIO(data)) is True
        with resolver.fetcher(ref).fetch(desc) as stream:
            chunks = list(stream)
    assert [len(c) for c in chunks] == [mib, mib, mib, 12345]
    assert b"".join(chunks) == data


def test_multiplatform_index(plain: Registry, layout: testimage.ImageInfo) -> None:
    index_desc, by_platform = push_multiplatform(plain.url, layout.layout, "multi", "v1")
    with Resolver() as resolver:
        name, desc = resolver.resolve(f"{plain.host}/multi:v1")
        assert desc == index_desc
        fetcher = resolver.fetcher(name)
        index = json.loads(read_all(fetcher, desc))
        assert index["manifests"][0]["platform"]["architecture"] == other_arch()  # listed first
        chosen = platforms.default().best(index["manifests"])
        assert chosen["digest"] == layout.manifest_digest
        assert chosen["digest"] == by_platform[f"linux/{testimage.host_arch()}"]["digest"]
        other = platforms.only(platforms.parse(f"linux/{other_arch()}")).best(index["manifests"])
        manifest = json.loads(read_all(fetcher, dict(other)))
        config = json.loads(read_all(fetcher, manifest["config"]))
        assert config["architecture"] == other_arch()
        with pytest.raises(NotFound, match="no match for platform"):
            platforms.only(platforms.parse("linux/s390x")).best(index["manifests"])


def test_docker_io_mirror_from_hosts_toml(
    plain: Registry, layout: testimage.ImageInfo, tmp_path: Path
) -> None:
    """docker.io through hosts.toml: a dead mirror (connection refused), a mirror that has
    nothing (404), then ours; registry-1.docker.io is never reached (no internet here)."""
    with FakeServer() as fake:
        (tmp_path / "docker.io").mkdir()
        (tmp_path / "docker.io" / "hosts.toml").write_text(
            'server = "https://registry-1.docker.io"\n'
            f'[host."http://127.0.0.1:{free_port()}"]\n  capabilities = ["pull", "resolve"]\n'
            f'[host."http://{fake.host}"]\n  capabilities = ["pull", "resolve"]\n'
            f'[host."http://{plain.host}"]\n  capabilities = ["pull", "resolve"]\n'
        )
        with Resolver(hosts=configure_hosts(tmp_path), retries=1, backoff=0.01) as resolver:
            pull_image(resolver, "busybox", layout)
    assert fake.requests[0][:2] == ("HEAD", f"/v2/{REPO}/manifests/{TAG}?ns=docker.io")
    assert f'"HEAD /v2/{REPO}/manifests/{TAG}?ns=docker.io HTTP/1.1" 200' in plain.log()


# --- htpasswd (Basic) --------------------------------------------------------------------


def test_basic_auth(basic: Registry, layout: testimage.ImageInfo) -> None:
    ref = f"{basic.host}/{REPO}:{TAG}"
    with (
        Resolver() as resolver,
        pytest.raises(AuthorizationFailed, match=f"no credentials for {basic.host}"),
    ):
        resolver.resolve(ref)
    with (
        Resolver(credentials=lambda host: (USERNAME, "wrong")) as resolver,
        pytest.raises(AuthorizationFailed, match=r"pull access denied.*401 Unauthorized"),
    ):
        resolver.resolve(ref)
    with Resolver(credentials=basic.credentials) as resolver:
        pull_image(resolver, ref, layout)


# --- token (Bearer) ----------------------------------------------------------------------


def test_token_auth_scope_and_cache(token: Registry, layout: testimage.ImageInfo) -> None:
    assert token.issuer is not None
    token.issuer.requests.clear()
    with Resolver(credentials=token.credentials) as resolver:
        pull_image(resolver, f"{token.host}/{REPO}:{TAG}", layout)  # 4 requests, 1 token
    [request] = token.issuer.requests
    assert (request.user, request.service, request.scopes) == (
        USERNAME,
        SERVICE,
        [f"repository:{REPO}:pull"],
    )


def test_token_access_token_and_expiry(token: Registry) -> None:
    assert token.issuer is not None
    issuer = token.issuer
    issuer.requests.clear()
    issuer.token_key, issuer.expires_in = "access_token", 1
    try:
        with Resolver(credentials=token.credentials) as resolver:
            resolver.resolve(f"{token.host}/{REPO}:{TAG}")
            resolver.resolve(f"{token.host}/{REPO}:{TAG}")
            assert len(issuer.requests) == 1
            threading.Event().wait(1.0)  # the token was cached for 0.9 s
            resolver.resolve(f"{token.host}/{REPO}:{TAG}")
            assert len(issuer.requests) == 2
    finally:
        issuer.token_key, issuer.expires_in = "token", 300


def test_token_auth_refused(token: Registry) -> None:
    ref = f"{token.host}/{REPO}:{TAG}"
    with (
        Resolver(credentials=lambda host: (USERNAME, "wrong")) as resolver,
        pytest.raises(
            AuthorizationFailed,
            match=r"failed to fetch token: GET http://127\.0\.0\.1:\d+/token.*401",
        ),
    ):
        resolver.resolve(ref)
    with (
        Resolver() as resolver,  # an anonymous token grants nothing here
        pytest.raises(AuthorizationFailed, match=r"pull access denied.*insufficient_scope"),
    ):
        resolver.resolve(ref)


# --- a scripted fake server --------------------------------------------------------------

Responder = Callable[[BaseHTTPRequestHandler], None]


def reply(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Responder:
    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            h.send_header(key, value)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    return respond


def cut(body: bytes, after: int) -> Responder:
    """Promise the whole body, send `after` bytes, hang up."""

    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body[:after])
        h.wfile.flush()
        h.close_connection = True

    return respond


def ranged(body: bytes) -> Responder:
    def respond(h: BaseHTTPRequestHandler) -> None:
        start = int(h.headers["Range"].removeprefix("bytes=").rstrip("-"))
        content_range = f"bytes {start}-{len(body) - 1}/{len(body)}"
        reply(206, body[start:], {"Content-Range": content_range})(h)

    return respond


def unsized(body: bytes) -> Responder:
    """HTTP/1.0 style: no Content-Length, the body ends when the connection does."""

    def respond(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        h.wfile.write(body)
        h.close_connection = True

    return respond


class FakeServer:
    """Answers each (method, path) with its responders in turn (the last one repeats); 404
    for anything else. `requests` records (method, path, headers)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Responder]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self) -> None:
                server.requests.append((self.command, self.path, dict(self.headers)))
                path = self.path.partition("?")[0]
                responders = server.routes.get((self.command, path)) or [reply(404)]
                (responders.pop(0) if len(responders) > 1 else responders[0])(self)

            do_GET = do_HEAD = handle_one

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def on(self, method: str, path: str, *responders: Responder) -> None:
        self.routes[(method, path)] = list(responders)

    def resolver(self, **kwargs: Any) -> Resolver:
        return Resolver(hosts=lambda ns: [RegistryHost("http", self.host)], backoff=0.01, **kwargs)

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


BODY = bytes(range(256)) * 1200  # 300 KiB
BLOB = {"mediaType": "application/octet-stream", "digest": sha256(BODY), "size": len(BODY)}
BLOB_PATH = f"/v2/repo/blobs/{BLOB['digest']}"


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with FakeServer() as server:
        yield server


def test_wrong_bytes_are_refused_before_the_last_chunk(fake: FakeServer) -> None:
    wrong = bytes(len(BODY))
    fake.on("GET", BLOB_PATH, reply(200, wrong))
    got: list[bytes] = []
    with (
        fake.resolver() as resolver,
        resolver.fetcher(f"{fake.host}/repo:x").fetch(BLOB) as stream,
        pytest.raises(FailedPrecondition, match=f"unexpected commit digest {sha256(wrong)}"),
    ):
        got.extend(stream)
    assert got == []  # one chunk: held back until the digest was checked


def test_wrong_bytes_big_blob_keeps_the_last_chunk_back(fake: FakeServer) -> None:
    body = os.urandom(2 * (1 << 20) + 7)
    desc = {"mediaType": "application/octet-stream", "digest": sha256(b"x"), "size": len(body)}
    fake.on("GET", f"/v2/repo/blobs/{desc['digest']}", reply(200, body))
    got: list[bytes] = []
    with (
        fake.resolver() as resolver,
        resolver.fetcher(f"{fake.host}/repo:x").fetch(desc) as stream,
        pytest.raises(FailedPrecondition, match="unexpected commit digest"),
    ):
        got.extend(stream)
    assert b"".join(got) == body[: 1 << 20]


def test_longer_body_is_cut_off(fake: FakeServer) -> None:
    fake.on("GET", BLOB_PATH, unsized(BODY + b"more"))
    with (
        fake.resolver() as resolver,
        resolver.fetcher(f"{fake.host}/repo:x").fetch(BLOB) as stream,
        pytest.raises(FailedPrecondition, match="unexpected commit size"),
    ):
        stream.read()


def test_oversized_manifests_are_refused_unread(fake: FakeServer) -> None:
    size = MAX_MANIFEST_SIZE + 1
    digest = sha256(b"big")
    head = reply(200, headers={"Content-Length": str(size), "Docker-Content-Digest": digest})
    fake.on("HEAD", "/v2/repo/manifests/big", head)
    fake.on("GET", f"/v2/repo/manifests/{digest}", reply(200, b"{}", {"Content-Length": str(size)}))
    with fake.resolver() as resolver:
        with pytest.raises(NotFound, match=f"rejecting {size} byte manifest"):
            resolver.resolve(f"{fake.host}/repo:big")
        fetcher = resolver.fetcher(f"{fake.host}/repo:big")
        before = len(fake.requests)
        with pytest.raises(NotFound, match=f"rejecting {size} byte manifest"):
            fetcher.fetch({"mediaType": OCI_MANIFEST, "digest": digest, "size": size})
        assert len(fake.requests) == before  # refused from the descriptor alone
        with pytest.raises(NotFound, match=f"rejecting {size} byte manifest"):
            fetcher.fetch({"mediaType": OCI_MANIFEST, "digest": digest, "size": 2})


def test_resolve_falls_back_to_get(fake: FakeServer) -> None:
    manifest = b'{"schemaVersion":2}'
    fake.on("HEAD", "/v2/repo/manifests/x", reply(405))
    fake.on(
        "GET",
        "/v2/repo/manifests/x",
        reply(200, manifest, {"Content-Type": f"{OCI_MANIFEST}; charset=utf-8"}),
    )
    with fake.resolver() as resolver:
        _, desc = resolver.resolve(f"{fake.host}/repo:x")
    assert desc == {"mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest)}


def test_5xx_is_retried(fake: FakeServer) -> None:
    fake.on("GET", BLOB_PATH, reply(503), reply(500), reply(200, BODY))
    with fake.resolver(retries=2) as resolver:
        assert read_all(resolver.fetcher(f"{fake.host}/repo:x"), BLOB) == BODY
    assert len(fake.requests) == 3
    fake.on("GET", BLOB_PATH, reply(503))
    with fake.resolver(retries=1) as resolver, pytest.raises(Unavailable, match="503"):
        resolver.fetcher(f"{fake.host}/repo:x").fetch(BLOB)


def test_broken_download_resumes_with_range(fake: FakeServer) -> None:
    fake.on("GET", BLOB_PATH, cut(BODY, 100_000), ranged(BODY))
    with fake.resolver() as resolver:
        assert read_all(resolver.fetcher(f"{fake.host}/repo:x"), BLOB) == BODY
    assert fake.requests[1][2]["Range"] == "bytes=100000-"
    fake.on("GET", BLOB_PATH, cut(BODY, 100_000), reply(200, BODY))  # Range ignored
    with fake.resolver() as resolver:
        assert read_all(resolver.fetcher(f"{fake.host}/repo:x"), BLOB) == BODY


def test_redirects_are_followed(fake: FakeServer) -> None:
    fake.on("GET", BLOB_PATH, reply(307, headers={"Location": "/storage/blob"}))
    fake.on("GET", "/storage/blob", reply(200, BODY))
    with fake.resolver() as resolver:
        assert read_all(resolver.fetcher(f"{fake.host}/repo:x"), BLOB) == BODY


def test_connection_refused_is_unavailable() -> None:
    port = free_port()
    hosts = [RegistryHost("http", f"127.0.0.1:{port}")]
    with (
        Resolver(hosts=lambda ns: hosts, retries=1, backoff=0.01) as resolver,
        pytest.raises(Unavailable, match="ConnectError"),
    ):
        resolver.resolve(f"127.0.0.1:{port}/repo:x")


# --- WWW-Authenticate --------------------------------------------------------------------


def test_parse_challenges() -> None:
    [bearer, basic] = parse_challenges(
        [
            'Basic realm="registry"',
            'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull push"',
        ]
    )
    assert (basic.scheme, basic.params) == ("basic", {"realm": "registry"})
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull push",
    }
    several = parse_challenges(
        ['Basic realm="a\\"b", Bearer realm=tok,error="invalid_token"', "Negotiate"]
    )
    assert [(c.scheme, c.params) for c in several] == [
        ("bearer", {"realm": "tok", "error": "invalid_token"}),
        ("basic", {"realm": 'a"b'}),
    ]


def test_authorization_header_reaches_only_its_host(fake: FakeServer) -> None:
    """httpx drops Authorization on a redirect to another origin, as Go's client does."""
    with FakeServer() as storage:
        storage.on("GET", "/blob", reply(200, BODY))
        fake.on(
            "GET",
            BLOB_PATH,
            reply(401, headers={"WWW-Authenticate": 'Basic realm="r"'}),
            reply(307, headers={"Location": f"http://{storage.host}/blob"}),
        )
        with fake.resolver(credentials=lambda host: ("u", "p")) as resolver:
            assert read_all(resolver.fetcher(f"{fake.host}/repo:x"), BLOB) == BODY
        assert fake.requests[-1][2]["Authorization"].startswith("Basic ")
        assert "Authorization" not in storage.requests[0][2]
