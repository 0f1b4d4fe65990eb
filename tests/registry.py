"""A real registry for the tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1.

`Registry(mode)` starts one on a free port with a temp storage dir, in one of three modes:

- `plain`: no auth;
- `htpasswd`: Basic auth against an htpasswd file (bcrypt, the only hash distribution takes);
- `token`: Docker token auth. A tiny issuer (`TokenIssuer`, an http.server thread) checks
  Basic credentials and answers with a JWT signed ES256 by a key whose self-signed
  certificate is the registry's `rootcertbundle`; the JWT header carries that certificate
  as `x5c`, which distribution verifies against the bundle.

`push_layout` pushes an OCI image layout (`stacklab.testimage.build_image_layout`) with our
own pusher; `push_multiplatform` pushes an index of that manifest and a fake one for another
architecture.
"""

import base64
import datetime
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import bcrypt
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from containerd_py.client import mediatypes
from containerd_py.client.platforms import Platform
from containerd_py.client.remotes import RegistryHost, Resolver
from stacklab import testimage

REGISTRY_BINARY = "docker-registry"
SERVICE = "stacklab-registry"
ISSUER = "stacklab-token-issuer"
USERNAME, PASSWORD = "stacklab", "lab-secret"
MODES = ("plain", "htpasswd", "token")

CONFIG = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {root}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""
HTPASSWD_AUTH = """\
auth:
  htpasswd:
    realm: {service}
    path: {root}/htpasswd
"""
TOKEN_AUTH = """\
auth:
  token:
    realm: {realm}
    service: {service}
    issuer: {issuer}
    rootcertbundle: {root}/issuer.crt
"""


def missing() -> str | None:
    """Why the registry tests cannot run here, or None."""
    return None if shutil.which(REGISTRY_BINARY) else f"{REGISTRY_BINARY} is not installed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRequest:
    user: str | None  # None: anonymous
    service: str
    scopes: list[str]


@dataclass
class TokenIssuer:
    """Docker's token server, enough for distribution: GET /token?service=…&scope=…"""

    username: str
    password: str
    token_key: str = "token"  # or "access_token", the OAuth name clients also accept
    expires_in: int = 300
    requests: list[TokenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS, ES256: the signature is r || s, 32 bytes each (JOSE, not DER)."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        r, s = decode_dss_signature(
            self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _grant(self, user: str | None, service: str, scopes: list[str]) -> dict[str, Any]:
        access = []
        for scope in scopes if user else []:  # anonymous: a valid token that grants nothing
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": user or "",
            "aud": service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        issued = datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat()
        return {
            self.token_key: self.sign(claims),
            "expires_in": self.expires_in,
            "issued_at": issued,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qsl(urlsplit(self.path).query)
                scopes = [v for k, v in query if k == "scope"]
                service = next((v for k, v in query if k == "service"), "")
                user: str | None = None
                auth = self.headers.get("Authorization", "")
                if auth.lower().startswith("basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if (user, password) != (issuer.username, issuer.password):
                        self._reply(
                            401,
                            {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                        )
                        return
                issuer.requests.append(TokenRequest(user, service, scopes))
                self._reply(200, issuer._grant(user, service, scopes))

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: pytest shows failures, not every request

        return Handler


class Registry:
    """A running docker-registry; `stop()` (or leaving the `with`) ends it and removes its
    temp dir."""

    def __init__(self, mode: str = "plain") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.username, self.password = USERNAME, PASSWORD
        self.dir = Path(tempfile.mkdtemp(prefix="stacklab-registry-"))
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.issuer: TokenIssuer | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _config(self) -> str:
        text = CONFIG.format(root=self.dir, port=self.port)
        if self.mode == "htpasswd":
            hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=5)).decode()
            (self.dir / "htpasswd").write_text(f"{self.username}:{hashed}\n")
            text += HTPASSWD_AUTH.format(root=self.dir, service=SERVICE)
        elif self.mode == "token":
            self.issuer = TokenIssuer(self.username, self.password)
            (self.dir / "issuer.crt").write_bytes(self.issuer.certificate_pem())
            self.issuer.start()
            text += TOKEN_AUTH.format(
                root=self.dir, realm=self.issuer.realm, service=SERVICE, issuer=ISSUER
            )
        return text

    def _start(self) -> None:
        config = self.dir / "config.yml"
        config.write_text(self._config())
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self._log = (self.dir / "registry.log").open("wb")
        self._proc = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not answer on {self.url}:\n{self.log()}")

    def log(self) -> str:
        path = self.dir / "registry.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def credentials(self, host: str) -> tuple[str, str] | None:
        """The `credentials` callback for a Resolver: ours for this registry only."""
        return (self.username, self.password) if host == self.host else None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._log.close()
            self._proc = None
        if self.issuer is not None:
            self.issuer.stop()
            self.issuer = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Registry":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


Credentials = Callable[[str], tuple[str, str] | None]


def _resolver(registry_url: str, credentials: Credentials | None) -> Resolver:
    u = urlsplit(registry_url)
    return Resolver(hosts=lambda ns: [RegistryHost(u.scheme, u.netloc)], credentials=credentials)


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / digest.replace(":", "/")


def _push_manifest_tree(
    resolver: Resolver, ref: str, layout: Path, manifest_desc: dict[str, Any], by_digest: bool
) -> None:
    """The config and layers of a manifest from the layout, then the manifest."""
    pusher = resolver.pusher(ref)
    manifest = json.loads(_blob(layout, manifest_desc["digest"]).read_bytes())
    for desc in [*manifest["layers"], manifest["config"]]:
        with _blob(layout, desc["digest"]).open("rb") as f:
            pusher.push(desc, f)
    data = _blob(layout, manifest_desc["digest"]).read_bytes()
    pusher.push(_plain(manifest_desc), data, by_digest=by_digest)


def _plain(desc: dict[str, Any]) -> dict[str, Any]:
    return {k: desc[k] for k in ("mediaType", "digest", "size")}


def push_layout(
    registry_url: str,
    layout_dir: Path,
    repo: str,
    tag: str,
    credentials: Credentials | None = None,
) -> dict[str, Any]:
    """Push the layout's (first) image as `<registry>/<repo>:<tag>` with our pusher; its
    manifest descriptor."""
    index = json.loads((layout_dir / "index.json").read_bytes())
    desc: dict[str, Any] = index["manifests"][0]
    ref = f"{urlsplit(registry_url).netloc}/{repo}:{tag}"
    with _resolver(registry_url, credentials) as resolver:
        _push_manifest_tree(resolver, ref, layout_dir, desc, by_digest=False)
    return _plain(desc)


def other_arch() -> str:
    return "arm64" if testimage.host_arch() == "amd64" else "amd64"


def push_multiplatform(
    registry_url: str,
    layout_dir: Path,
    repo: str,
    tag: str,
    credentials: Credentials | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Push an OCI index under `<repo>:<tag>`: a fake manifest for another architecture
    (its own config, the same layers) listed first, then the layout's real one for this
    host. The index's descriptor, and the manifests' by platform (`linux/arm64/v8`, …)."""
    real = json.loads((layout_dir / "index.json").read_bytes())["manifests"][0]
    manifest = json.loads(_blob(layout_dir, real["digest"]).read_bytes())
    config = json.loads(_blob(layout_dir, manifest["config"]["digest"]).read_bytes())
    arch = other_arch()
    fake_platform = {"architecture": arch, "os": "linux"} | (
        {"variant": "v8"} if arch == "arm64" else {}
    )
    config |= fake_platform
    config_data = testimage.canonical_json(config)
    config_desc = {
        "mediaType": mediatypes.OCI_CONFIG,
        "digest": testimage.sha256(config_data),
        "size": len(config_data),
    }
    fake = manifest | {"config": config_desc}
    fake_data = testimage.canonical_json(fake)
    fake_desc = {
        "mediaType": mediatypes.OCI_MANIFEST,
        "digest": testimage.sha256(fake_data),
        "size": len(fake_data),
    }
    real_desc = _plain(real)
    entries = [fake_desc | {"platform": fake_platform}, real_desc | {"platform": real["platform"]}]
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    index_data = testimage.canonical_json(index)
    index_desc = {
        "mediaType": mediatypes.OCI_INDEX,
        "digest": testimage.sha256(index_data),
        "size": len(index_data),
    }
    ref = f"{urlsplit(registry_url).netloc}/{repo}:{tag}"
    with _resolver(registry_url, credentials) as resolver:
        _push_manifest_tree(resolver, ref, layout_dir, real, by_digest=True)
        pusher = resolver.pusher(ref)
        pusher.push(config_desc, config_data)
        pusher.push(fake_desc, fake_data, by_digest=True)
        pusher.push(index_desc, index_data)
    return index_desc, {str(Platform.from_dict(e["platform"])): _plain(e) for e in entries}
