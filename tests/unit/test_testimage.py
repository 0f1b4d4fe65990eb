"""The test-image builder: a valid, deterministic OCI layout and the two archive formats."""

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from runc_py.spec import default_spec
from stacklab import testimage


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, testimage.ImageInfo]:
    dest = tmp_path_factory.mktemp("layout")
    return dest, testimage.build_image_layout(dest)


def blob(layout: Path, desc: dict[str, Any]) -> bytes:
    algo, _, hexdigest = str(desc["digest"]).partition(":")
    assert algo == "sha256"
    data = (layout / "blobs" / "sha256" / hexdigest).read_bytes()
    assert len(data) == desc["size"]
    assert hashlib.sha256(data).hexdigest() == hexdigest
    return data


def layer_members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def test_layout_structure(layout: tuple[Path, testimage.ImageInfo]) -> None:
    path, info = layout
    assert json.loads((path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(info.index_path.read_text())
    assert index["schemaVersion"] == 2
    [desc] = index["manifests"]
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert desc["annotations"] == {
        "io.containerd.image.name": "docker.io/library/busybox:latest",
        "org.opencontainers.image.ref.name": "latest",
    }
    assert desc["digest"] == info.manifest_digest
    manifest = json.loads(blob(path, desc))
    assert manifest["mediaType"] == desc["mediaType"]
    assert manifest["config"]["digest"] == info.config_digest
    config = json.loads(blob(path, manifest["config"]))
    assert config["os"] == "linux" and config["architecture"]
    assert config["config"]["Cmd"] == ["sh"]
    assert any(e.startswith("PATH=") for e in config["config"]["Env"])
    assert len(config["history"]) == len(manifest["layers"]) == 1
    for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True):
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        raw = gzip.decompress(blob(path, layer))
        assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert [layer["digest"] for layer in manifest["layers"]] == info.layer_digests
    # Every file under blobs/ is referenced: index -> manifest -> config + layers.
    blobs = {p.name for p in (path / "blobs" / "sha256").iterdir()}
    referenced = [desc, manifest["config"], *manifest["layers"]]
    assert blobs == {d["digest"].removeprefix("sha256:") for d in referenced}


def test_layer_contents(layout: tuple[Path, testimage.ImageInfo]) -> None:
    path, info = layout
    data = (path / "blobs/sha256" / info.layer_digests[0].removeprefix("sha256:")).read_bytes()
    members = layer_members(data)
    busybox = members["bin/busybox"]
    assert busybox.isreg() and busybox.mode == 0o755
    assert busybox.size == Path("/usr/bin/busybox").stat().st_size
    for applet in ("sh", "id", "hostname", "cat", "sleep", "echo", "env", "ls"):
        assert members[f"bin/{applet}"].issym() and members[f"bin/{applet}"].linkname == "busybox"
    assert "bin/busybox" not in {m.name for m in members.values() if m.issym()}
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())
    assert list(members) == sorted(members)


def test_rootfs_users_and_groups(tmp_path: Path) -> None:
    testimage.build_rootfs(tmp_path)
    passwd = (tmp_path / "etc/passwd").read_text().splitlines()
    assert "root:x:0:0:root:/root:/bin/sh" in passwd
    uids = {line.split(":")[0]: line.split(":")[2] for line in passwd}
    assert uids == {"root": "0", "daemon": "1", "nobody": "65534"}
    gids = {ln.split(":")[0]: ln.split(":")[2] for ln in (tmp_path / "etc/group").open()}
    assert gids == {"root": "0", "daemon": "1", "tty": "5", "nogroup": "65534"}
    assert (tmp_path / "bin/sh").readlink() == Path("busybox")
    assert (tmp_path / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (tmp_path / "etc/hostname").read_text().strip()
    assert "localhost" in (tmp_path / "etc/hosts").read_text()
    testimage.build_rootfs(tmp_path)  # rebuilding over an existing rootfs is fine


def test_deterministic(tmp_path: Path, layout: tuple[Path, testimage.ImageInfo]) -> None:
    again = testimage.build_image_layout(tmp_path / "again")
    assert again.manifest_digest == layout[1].manifest_digest
    assert (tmp_path / "again/index.json").read_bytes() == layout[1].index_path.read_bytes()
    other = testimage.build_image_layout(tmp_path / "other", ref="example.com/x/bb:v1")
    assert other.manifest_digest == again.manifest_digest  # the ref lives only in index.json
    assert b"example.com/x/bb:v1" in (tmp_path / "other/index.json").read_bytes()
    for name in ("a.tar", "b.tar"):
        testimage.write_oci_archive(layout[0], tmp_path / name)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_extra_layer_with_whiteouts(tmp_path: Path) -> None:
    changes: list[tuple[str, bytes | None]] = [
        ("/etc/motd", b"hello\n"),
        ("etc/hostname", None),
        ("var/log/", None),
        ("opt/app/", b""),
    ]
    info = testimage.build_image_layout(tmp_path, extra_layers=[changes])
    assert len(info.layer_digests) == len(info.diff_ids) == 2
    data = (tmp_path / "blobs/sha256" / info.layer_digests[1].removeprefix("sha256:")).read_bytes()
    members = layer_members(data)
    assert sorted(members) == [
        "etc", "etc/.wh.hostname", "etc/motd", "opt", "opt/app", "var", "var/log",
        "var/log/.wh..wh..opq",
    ]  # fmt: skip
    assert members["var/log"].mode == 0o755 and members["etc"].mode == 0o755
    assert members["etc/motd"].isreg() and members["etc/.wh.hostname"].size == 0
    assert members["etc"].isdir() and members["opt/app"].isdir()


def test_oci_archive_members(tmp_path: Path, layout: tuple[Path, testimage.ImageInfo]) -> None:
    path, info = layout
    testimage.write_oci_archive(path, tmp_path / "busybox-oci.tar")
    with tarfile.open(tmp_path / "busybox-oci.tar") as tar:
        names = {m.name.rstrip("/") for m in tar.getmembers()}
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    hexes = {d.removeprefix("sha256:") for d in [info.manifest_digest, info.config_digest]}
    hexes |= {d.removeprefix("sha256:") for d in info.layer_digests}
    assert names == {"oci-layout", "index.json", "blobs", "blobs/sha256"} | {
        f"blobs/sha256/{h}" for h in hexes
    }
    assert index["manifests"][0]["digest"] == info.manifest_digest


def test_docker_archive_members(tmp_path: Path, layout: tuple[Path, testimage.ImageInfo]) -> None:
    path, info = layout
    testimage.write_docker_archive(path, tmp_path / "busybox-docker.tar")
    with tarfile.open(tmp_path / "busybox-docker.tar") as tar:
        names = {m.name.rstrip("/") for m in tar.getmembers()}
        [entry] = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        repositories = json.loads(tar.extractfile("repositories").read())  # type: ignore[union-attr]
        layer = tar.extractfile(entry["Layers"][0]).read()  # type: ignore[union-attr]
    config_hex = info.config_digest.removeprefix("sha256:")
    layer_id = info.diff_ids[0].removeprefix("sha256:")
    assert entry == {
        "Config": f"{config_hex}.json",
        "RepoTags": ["busybox:latest"],
        "Layers": [f"{layer_id}/layer.tar"],
    }
    layer_tar = f"{layer_id}/layer.tar"
    assert names == {"manifest.json", "repositories", f"{config_hex}.json", layer_id, layer_tar}
    assert repositories == {"busybox": {"latest": layer_id}}
    assert "sha256:" + hashlib.sha256(layer).hexdigest() == info.diff_ids[0]

    testimage.write_docker_archive(path, tmp_path / "tagged.tar", ["reg.local:5000/bb:v2"])
    with tarfile.open(tmp_path / "tagged.tar") as tar:
        [entry] = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert entry["RepoTags"] == ["reg.local:5000/bb:v2"]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert testimage.main(["bundle", str(tmp_path / "b"), "--", "echo", "hi"]) == 0
    assert "wrote bundle" in capsys.readouterr().out
    config = json.loads((tmp_path / "b/config.json").read_text())
    assert config == default_spec(terminal=False, args=["echo", "hi"])
    assert (tmp_path / "b/rootfs/bin/busybox").is_file()
    assert testimage.main(["layout", str(tmp_path / "l"), "--ref", "x.io/a/b:c"]) == 0
    out = capsys.readouterr().out
    assert "x.io/a/b:c" in out and (tmp_path / "l/oci-layout").is_file()
    assert testimage.main(["docker-archive", str(tmp_path / "d.tar")]) == 0
    assert tarfile.is_tarfile(tmp_path / "d.tar")
