"""containerd_py.client.remotes.hosts: containerd's hosts.toml directory, and the defaults."""

from pathlib import Path

import pytest

from containerd_py.client.remotes import PULL, RESOLVE, RegistryHost, configure_hosts
from containerd_py.client.remotes.hosts import (
    ALL_CAPABILITIES,
    host_directory,
    host_paths,
    is_localhost,
    parse_hosts_toml,
)
from containerd_py.errdefs import InvalidArgument


def test_host_directory_and_paths() -> None:
    assert host_directory("127.0.0.1:5000") == "127.0.0.1_5000_"
    assert host_directory("docker.io") == "docker.io"
    root = Path("/etc/containerd/certs.d")
    assert host_paths(root, "reg:443") == [root / "reg_443_", root / "reg:443", root / "_default"]
    assert host_paths(root, "docker.io") == [root / "docker.io", root / "_default"]


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("127.0.0.1", True),
        ("127.0.0.53:80", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("10.0.0.1:5000", False),
        ("docker.io", False),
        ("localhost.example.com", False),
    ],
)
def test_is_localhost(host: str, local: bool) -> None:
    assert is_localhost(host) is local


def test_defaults_without_config() -> None:
    hosts = configure_hosts()
    assert hosts("docker.io") == [RegistryHost("https", "registry-1.docker.io")]
    assert hosts("quay.io") == [RegistryHost("https", "quay.io")]
    assert hosts("127.0.0.1:5000") == [RegistryHost("http", "127.0.0.1:5000", skip_verify=True)]
    assert hosts("localhost") == [RegistryHost("http", "localhost", skip_verify=True)]
    plain = configure_hosts(plain_http=True)
    assert plain("quay.io") == [RegistryHost("http", "quay.io")]
    assert plain("docker.io") == [RegistryHost("https", "registry-1.docker.io")]


def test_hosts_toml_mirrors_first_in_file_order(tmp_path: Path) -> None:
    d = tmp_path / "docker.io"
    d.mkdir()
    (d / "hosts.toml").write_text(
        """
server = "https://registry-1.docker.io"
ca = "root.pem"

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true

[host."https://mirror.example.com/prefix/"]
  capabilities = ["pull"]
  ca = ["/abs/ca.pem", "rel/ca.pem"]
  client = [["c.cert", "c.key"], "both.pem"]
  header = {x-one = "1", x-many = ["a", "b"]}

[host."override.example.com/custom/api"]
  override_path = true
"""
    )
    hosts = configure_hosts(tmp_path)("docker.io")
    assert hosts == [
        RegistryHost(
            "http",
            "127.0.0.1:5000",
            "/v2",
            frozenset({PULL, RESOLVE}),
            skip_verify=True,
        ),
        RegistryHost(
            "https",
            "mirror.example.com",
            "/prefix/v2",
            frozenset({PULL}),
            ca_certs=("/abs/ca.pem", str(d / "rel/ca.pem")),
            client_certs=((str(d / "c.cert"), str(d / "c.key")), (str(d / "both.pem"), "")),
            headers=(("x-one", "1"), ("x-many", "a"), ("x-many", "b")),
        ),
        RegistryHost("https", "override.example.com", "/custom/api", ALL_CAPABILITIES),
        RegistryHost("https", "registry-1.docker.io", ca_certs=(str(d / "root.pem"),)),
    ]
    assert hosts[0].is_mirror_of("docker.io")
    assert not hosts[-1].is_mirror_of("docker.io")


def test_port_directory_default_dir_and_default_server(tmp_path: Path) -> None:
    (tmp_path / "reg.example.com_5000_").mkdir()
    (tmp_path / "reg.example.com_5000_" / "hosts.toml").write_text(
        '[host."https://mirror.example.com"]\n'
    )
    (tmp_path / "_default").mkdir()
    (tmp_path / "_default" / "hosts.toml").write_text('server = "https://fallback.example.com"\n')
    hosts = configure_hosts(tmp_path)
    assert [h.host for h in hosts("reg.example.com:5000")] == [
        "mirror.example.com",
        "reg.example.com:5000",  # no server in the file: the registry itself
    ]
    assert hosts("other.example.com") == [RegistryHost("https", "fallback.example.com")]


def test_certs_d_layout_without_hosts_toml(tmp_path: Path) -> None:
    d = tmp_path / "reg.example.com"
    d.mkdir()
    for name in ("ca.crt", "client.cert", "client.key", "lone.cert", "notes.txt"):
        (d / name).write_text("")
    [host] = configure_hosts(tmp_path)("reg.example.com")
    assert (host.scheme, host.host, host.path) == ("https", "reg.example.com", "/v2")
    assert host.ca_certs == (str(d / "ca.crt"),)
    assert host.client_certs == (
        (str(d / "client.cert"), str(d / "client.key")),
        (str(d / "lone.cert"), ""),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[host."https://m"]\n  capabilities = ["pull", "delete"]\n', "unknown capability delete"),
        ("server = [1]\n", "invalid type"),
        ('[host."https://m"]\n  client = [["a", "b", "c"]]\n', "invalid pair"),
        ('[host."https://m"]\n  ca = 1\n', "invalid type int for 'ca'"),
        ("server = \n", "failed to parse TOML"),
        ('host = "x"\n', "invalid `host` tree"),
    ],
)
def test_hosts_toml_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_hosts_toml(text, Path("/"))
