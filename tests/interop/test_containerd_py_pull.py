"""Pulls into containerd-py from a real docker-registry on 127.0.0.1: the real `ctr` with
`--plain-http`, and our Python client through basic auth, token auth, a multi-platform index
and a `hosts.toml` mirror for docker.io; then the unpacked snapshots, mounted by hand."""

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd_py_daemon import ContainerdPy, start_containerd_py

from containerd_py.client.client import Client
from containerd_py.client.pull import pull
from containerd_py.client.remotes.hosts import configure_hosts
from containerd_py.client.remotes.resolver import Resolver
from containerd_py.client.unpack import chain_ids
from containerd_py.errdefs import ContainerdError
from stacklab import testimage

sys.path.insert(0, str(Path(__file__).parent.parent))
import registry as reg

pytestmark = [pytest.mark.root, pytest.mark.interop]

# Two layers on top of busybox: the first adds a user's home, the second deletes a file,
# replaces one, makes /home opaque and adds another user to it, so the unpacked top snapshot
# shows Docker's whiteout semantics.
ADD_HOME = [("home/old-user/.profile", b"old\n")]
CHANGES = [
    ("etc/group", None),
    ("etc/hostname", b"replaced\n"),
    ("home/", None),
    ("home/new-user/.profile", b"export PS1=lab\n"),
]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, testimage.ImageInfo]:
    if reason := reg.missing():
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("layouts")
    return {
        "busybox": testimage.build_image_layout(tmp / "busybox"),
        "layered": testimage.build_image_layout(
            tmp / "layered", "docker.io/library/layered:latest", [ADD_HOME, CHANGES]
        ),
    }


@pytest.fixture(scope="module")
def cdpy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerdPy]:
    with start_containerd_py(tmp_path_factory.mktemp("cdpy")) as cd:
        yield cd


@pytest.fixture(scope="module")
def plain(layouts: dict[str, testimage.ImageInfo]) -> Iterator[reg.Registry]:
    with reg.Registry("plain") as r:
        reg.push_layout(r.url, layouts["busybox"].layout, "library/busybox", "latest")
        reg.push_layout(r.url, layouts["layered"].layout, "library/layered", "latest")
        yield r


@pytest.fixture
def client(cdpy: ContainerdPy, request: pytest.FixtureRequest) -> Iterator[Client]:
    """A client in a namespace of the test's own, emptied afterwards."""
    ns = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60].strip("-")
    with cdpy.client(ns) as c:
        yield c
        for image in c.list_images():
            c.delete_image(image.name)
    assert not cdpy.ctr("content", "ls", "-q", namespace=ns).stdout.strip()
    cdpy.ctr("namespaces", "rm", ns)


def plain_resolver(r: reg.Registry) -> Resolver:
    return Resolver(hosts=configure_hosts(plain_http=True))


def mounted(
    cdpy: ContainerdPy, ns: str, parent: str, target: Path
) -> subprocess.CompletedProcess[str]:
    result = cdpy.ctr("snapshots", "view", f"look-{target.name}", parent, namespace=ns)
    assert result.returncode == 0, result.stderr
    command = cdpy.ctr("snapshots", "mounts", str(target), f"look-{target.name}", namespace=ns)
    return subprocess.run(command.stdout.strip(), shell=True, capture_output=True, text=True)


def test_ctr_pull_plain_http_then_rm(
    cdpy: ContainerdPy, plain: reg.Registry, layouts: dict[str, testimage.ImageInfo]
) -> None:
    info = layouts["busybox"]
    ref = f"{plain.host}/library/busybox:latest"
    ns = "ctr-pull"
    pulled = cdpy.ctr("images", "pull", "--plain-http", ref, namespace=ns)
    assert pulled.returncode == 0, pulled.stderr + cdpy.log_tail()
    assert cdpy.ctr("images", "ls", "-q", namespace=ns).stdout.split() == [ref]
    check = cdpy.ctr("images", "check", namespace=ns).stdout
    assert "complete" in check and "true" in check.splitlines()[1]  # unpacked
    snaps = cdpy.ctr("snapshots", "ls", namespace=ns).stdout
    assert info.diff_ids[0] in snaps
    assert cdpy.ctr("images", "rm", ref, namespace=ns).returncode == 0
    assert cdpy.ctr("content", "ls", "-q", namespace=ns).stdout.strip() == ""
    assert info.layer_digests[0] not in cdpy.blobs()
    assert cdpy.snapshot_dirs() == []
    assert cdpy.ctr("namespaces", "rm", ns).returncode == 0


@pytest.mark.parametrize("mode", ["htpasswd", "token"])
def test_client_pulls_through_auth(
    mode: str,
    cdpy: ContainerdPy,
    client: Client,
    layouts: dict[str, testimage.ImageInfo],
) -> None:
    info = layouts["busybox"]
    with reg.Registry(mode) as r:
        reg.push_layout(r.url, info.layout, "library/busybox", "latest", r.credentials)
        ref = f"{r.host}/library/busybox:latest"
        anonymous = Resolver(hosts=configure_hosts(plain_http=True))
        with anonymous, pytest.raises(ContainerdError):
            pull(client, ref, resolver=anonymous)
        progress: list[tuple[str, int, int]] = []
        with Resolver(hosts=configure_hosts(plain_http=True), credentials=r.credentials) as res:
            image = pull(client, ref, resolver=res, progress=lambda *a: progress.append(a))
        if mode == "token":
            assert r.issuer is not None and r.issuer.requests, "no token was issued"
    assert image.name == ref and image.target.digest == info.manifest_digest
    assert client.stat_snapshot(info.diff_ids[0]).kind == 3  # committed
    layer = info.layer_digests[0]
    assert any(ref_ == f"layer-{layer}" and done == total for ref_, done, total in progress)


def test_multiplatform_index_picks_this_host(
    cdpy: ContainerdPy, client: Client, plain: reg.Registry, layouts: dict[str, testimage.ImageInfo]
) -> None:
    info = layouts["busybox"]
    index, by_platform = reg.push_multiplatform(plain.url, info.layout, "library/multi", "v1")
    ref = f"{plain.host}/library/multi:v1"
    with plain_resolver(plain) as res:
        image = pull(client, ref, resolver=res)
    assert image.target.digest == index["digest"]
    assert client.has_content(info.manifest_digest)
    other = next(d for p, d in by_platform.items() if testimage.host_arch() not in p)
    assert not client.has_content(other["digest"])
    labels = client.content_info(index["digest"]).labels
    assert info.manifest_digest in labels.values()


def test_hosts_toml_mirror_serves_docker_io(
    cdpy: ContainerdPy,
    client: Client,
    plain: reg.Registry,
    layouts: dict[str, testimage.ImageInfo],
    tmp_path: Path,
) -> None:
    """`docker.io/library/busybox:latest` with a certs.d-style folder pointing docker.io at
    the local registry: no byte comes from the internet (there is none here)."""
    (tmp_path / "docker.io").mkdir()
    (tmp_path / "docker.io" / "hosts.toml").write_text(
        'server = "https://registry-1.docker.io"\n\n'
        f'[host."http://{plain.host}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    with Resolver(hosts=configure_hosts(tmp_path)) as res:
        image = pull(client, "busybox", resolver=res)
    assert image.name == "docker.io/library/busybox:latest"
    assert image.target.digest == layouts["busybox"].manifest_digest
    assert "GET /v2/library/busybox/manifests/latest" in plain.log() or "HEAD" in plain.log()


def test_unpacked_layers_show_whiteouts(
    cdpy: ContainerdPy,
    client: Client,
    plain: reg.Registry,
    layouts: dict[str, testimage.ImageInfo],
    tmp_path: Path,
) -> None:
    info = layouts["layered"]
    with plain_resolver(plain) as res:
        pull(client, f"{plain.host}/library/layered:latest", resolver=res)
    top = chain_ids(info.diff_ids)[-1]
    target = tmp_path / "rootfs"
    target.mkdir()
    done = mounted(cdpy, client.namespace, top, target)
    assert done.returncode == 0, done.stderr
    try:
        assert (target / "bin" / "busybox").is_file()  # the lower layer
        assert not (target / "etc" / "group").exists()  # whited out
        assert (target / "etc" / "hostname").read_text() == "replaced\n"
        assert (target / "etc" / "passwd").exists()  # untouched
        assert sorted(p.name for p in (target / "home").iterdir()) == ["new-user"]  # opaque
        assert (target / "home" / "new-user" / ".profile").read_text() == "export PS1=lab\n"
        busybox = subprocess.run(
            ["chroot", str(target), "/bin/sh", "-c", "echo hi from $(cat /etc/hostname)"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert busybox.stdout == "hi from replaced\n"
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert (
        cdpy.ctr("snapshots", "rm", f"look-{target.name}", namespace=client.namespace).returncode
        == 0
    )
