"""Registry hosts, configured as containerd's `config_path` (`remotes/docker/config/hosts.go`).

For a reference on `host`, the first directory that exists of `<config_path>/<host_port_>`
(for `host:port`), `<config_path>/<host:port>` and `<config_path>/_default` is read: its
`hosts.toml`, or without one the Docker `certs.d` layout (`*.crt` CAs, `*.cert` + `*.key`
client pairs). The `[host."…"]` tables (mirrors) come first, in file order, then `server`.
Without a `server`, the default is used: `https://registry-1.docker.io` for docker.io, plain
HTTP for localhost and loopback addresses (containerd 1.6), else https (http with
`plain_http`, like ctr's `--plain-http`).
"""

import ipaddress
import posixpath
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from containerd_py.errdefs import InvalidArgument

PULL, RESOLVE, PUSH = "pull", "resolve", "push"
ALL_CAPABILITIES = frozenset({PULL, RESOLVE, PUSH})
DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVER = "registry-1.docker.io"


@dataclass(frozen=True)
class RegistryHost:
    """One endpoint to try for a registry namespace. Hashable: connections are pooled per
    TLS configuration (`ca_certs`, `client_certs`, `skip_verify`)."""

    scheme: str
    host: str
    path: str = "/v2"
    capabilities: frozenset[str] = ALL_CAPABILITIES
    ca_certs: tuple[str, ...] = ()
    client_certs: tuple[tuple[str, str], ...] = ()  # (cert, key); key "" if in the cert file
    skip_verify: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    def has(self, *capabilities: str) -> bool:
        return all(c in self.capabilities for c in capabilities)

    def is_mirror_of(self, namespace: str) -> bool:
        """Whether requests must carry `?ns=<namespace>`: this endpoint serves another
        registry's content (a mirror), as containerd's `isProxy`."""
        if namespace == DOCKER_HUB and self.host == DOCKER_HUB_SERVER:
            return False
        return namespace != self.host


RegistryHosts = Callable[[str], list[RegistryHost]]


def _split_port(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else host


def is_localhost(host: str) -> bool:
    """`localhost` or a loopback address, with or without a port."""
    name = _split_port(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_directory(host: str) -> str:
    """containerd's directory name for `host:port`: `host_port_`."""
    name, sep, port = host.rpartition(":")
    return f"{name}_{port}_" if sep and name else host


def host_paths(root: Path, host: str) -> list[Path]:
    paths = [root / host_directory(host)] if host_directory(host) != host else []
    return [*paths, root / host, root / "_default"]


def _server(server: str, override_path: bool) -> tuple[str, str, str]:
    if not server.startswith("http"):
        server = "https://" + server
    u = urlsplit(server)
    if not u.netloc:
        raise InvalidArgument(f"unable to parse server {server!r}")
    path = posixpath.normpath(u.path) if u.path else ""
    if not override_path and not path.endswith("/v2"):
        path = path.rstrip("/") + "/v2"
    return u.scheme, u.netloc, path


def _strings(value: Any, what: str) -> list[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidArgument(f"invalid type {type(value).__name__} for {what!r}")
    return values


def _abs(path: str, base: Path) -> str:
    return str(base / path)  # an absolute `path` stays as it is


def _client_pairs(value: Any, base: Path) -> tuple[tuple[str, str], ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InvalidArgument(f"invalid type {type(value).__name__} for 'client'")
    pairs = []
    for item in items:
        if isinstance(item, str):
            pairs.append((_abs(item, base), ""))
            continue
        pair = _strings(item, "client")
        if len(pair) != 2:
            raise InvalidArgument(f"invalid pair {item!r} for 'client'")
        pairs.append((_abs(pair[0], base), _abs(pair[1], base)))
    return tuple(pairs)


def _host_config(server: str, table: Mapping[str, Any], base: Path) -> RegistryHost:
    """One `[host."…"]` table, or the file's top level for `server` ("" when unset)."""
    scheme = host = path = ""
    if server:
        scheme, host, path = _server(server, bool(table.get("override_path", False)))
    caps = frozenset(c.lower() for c in _strings(table.get("capabilities", []), "capabilities"))
    if unknown := caps - ALL_CAPABILITIES:
        raise InvalidArgument(f"unknown capability {sorted(unknown)[0]}")
    headers: list[tuple[str, str]] = []
    for key, value in table.get("header", {}).items():
        headers += [(key, v) for v in _strings(value, f"header {key}")]
    skip_verify = table.get("skip_verify", False)
    if not isinstance(skip_verify, bool):
        raise InvalidArgument(f"invalid type {type(skip_verify).__name__} for 'skip_verify'")
    return RegistryHost(
        scheme=scheme,
        host=host,
        path=path,
        capabilities=caps or ALL_CAPABILITIES,
        ca_certs=tuple(_abs(p, base) for p in _strings(table.get("ca", []), "ca")),
        client_certs=_client_pairs(table.get("client", []), base),
        skip_verify=skip_verify,
        headers=tuple(headers),
    )


def parse_hosts_toml(text: str, base: Path) -> list[RegistryHost]:
    """The hosts of one hosts.toml; relative cert paths are taken from `base`. The last entry
    is the server, with `host == ""` when the file names none."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"failed to parse TOML: {e}") from e
    tables = doc.get("host", {})
    if not isinstance(tables, dict):
        raise InvalidArgument("invalid `host` tree")
    # tomllib keeps the file's order: mirrors are tried in the order they are written.
    hosts = [_host_config(name, table, base) for name, table in tables.items()]
    server = doc.get("server", "")
    if not isinstance(server, str):
        raise InvalidArgument("invalid type for 'server'")
    return [*hosts, _host_config(server, doc, base)]


def _cert_files(directory: Path) -> list[RegistryHost]:
    """Docker's certs.d layout: `*.crt` are CAs, `x.cert` a client cert with key `x.key`."""
    files = sorted(p for p in directory.iterdir() if p.is_file())
    cas = tuple(str(p) for p in files if p.suffix == ".crt")
    pairs = []
    for cert in (p for p in files if p.suffix == ".cert"):
        key = cert.with_suffix(".key")
        pairs.append((str(cert), str(key) if key.exists() else ""))
    return [RegistryHost("", "", ca_certs=cas, client_certs=tuple(pairs))]


def load_host_dir(directory: Path) -> list[RegistryHost]:
    toml = directory / "hosts.toml"
    if toml.is_file() and (text := toml.read_text()):
        try:
            return parse_hosts_toml(text, directory)
        except InvalidArgument as e:
            raise InvalidArgument(f"{toml}: {e}") from e
    return _cert_files(directory)


def _default_server(entry: RegistryHost, namespace: str, plain_http: bool) -> RegistryHost:
    if namespace == DOCKER_HUB:
        scheme, host, skip_verify = "https", DOCKER_HUB_SERVER, entry.skip_verify
    elif is_localhost(namespace):
        scheme, host, skip_verify = "http", namespace, True
    else:
        scheme, host, skip_verify = "http" if plain_http else "https", namespace, entry.skip_verify
    return replace(
        entry,
        scheme=scheme,
        host=host,
        path="/v2",
        capabilities=ALL_CAPABILITIES,
        skip_verify=skip_verify,
    )


def configure_hosts(
    config_path: str | Path | None = None, *, plain_http: bool = False
) -> RegistryHosts:
    """The hosts function of containerd's `ConfigureHosts` with `HostDirFromRoot(config_path)`:
    namespace (`docker.io`, `127.0.0.1:5000`) -> hosts to try, mirrors first."""
    root = Path(config_path) if config_path else None

    def hosts(namespace: str) -> list[RegistryHost]:
        found: list[RegistryHost] | None = None
        if root is not None:
            directory = next((p for p in host_paths(root, namespace) if p.exists()), None)
            if directory is not None:
                found = load_host_dir(directory)
        if found is None:
            found = [RegistryHost("", "")]
        if found and not found[-1].host:
            found[-1] = _default_server(found[-1], namespace, plain_http)
        return found

    return hosts
