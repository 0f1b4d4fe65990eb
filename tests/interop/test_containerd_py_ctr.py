"""The real `ctr` (Debian's containerd 1.6) against containerd-py: versions, plugins,
namespaces, import/export, content, snapshots, leases, and image removal collecting its blobs
and snapshots."""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd_py_daemon import ContainerdPy, start_containerd_py

from containerd_py.api.services.namespaces.v1 import namespace_pb2
from containerd_py.errdefs import NotFound
from stacklab import testimage

pytestmark = [pytest.mark.root, pytest.mark.interop]

REF = testimage.DEFAULT_REF


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[testimage.ImageInfo, Path]:
    tmp = tmp_path_factory.mktemp("image")
    info = testimage.build_image_layout(tmp / "layout")
    archive = tmp / "busybox-oci.tar"
    testimage.write_oci_archive(info.layout, archive)
    return info, archive


@pytest.fixture(scope="module")
def cdpy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerdPy]:
    with start_containerd_py(tmp_path_factory.mktemp("cdpy")) as cd:
        yield cd


def ok(result: "subprocess.CompletedProcess[str]") -> str:
    assert result.returncode == 0, f"{result.args}: {result.stderr}"
    return result.stdout


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()[1:] if line.strip()]


def test_version_and_plugins(cdpy: ContainerdPy) -> None:
    out = ok(cdpy.ctr("version"))
    assert "Server:" in out and "v1.6.20-stacklab" in out
    plugins = {(r[0], r[1]): r[-1] for r in rows(ok(cdpy.ctr("plugins", "ls")))}
    assert plugins[("io.containerd.snapshotter.v1", "overlayfs")] == "ok"
    assert plugins[("io.containerd.content.v1", "content")] == "ok"
    assert ("io.containerd.grpc.v1", "images") in plugins


def test_namespaces(cdpy: ContainerdPy) -> None:
    ok(cdpy.ctr("namespaces", "create", "nstest", "team=blue"))
    listed = {r[0]: r[1:] for r in rows(ok(cdpy.ctr("namespaces", "ls")))}
    assert listed["nstest"] == ["team=blue"]
    again = cdpy.ctr("namespaces", "create", "nstest")
    assert again.returncode != 0 and 'namespace "nstest": already exists' in again.stderr
    bad = cdpy.ctr("namespaces", "create", "no/slash")
    assert bad.returncode != 0 and "invalid argument" in bad.stderr
    ok(cdpy.ctr("leases", "create", "--id", "keep", namespace="nstest"))
    busy = cdpy.ctr("namespaces", "rm", "nstest")
    assert "must be empty, but it still has leases" in busy.stdout + busy.stderr
    ok(cdpy.ctr("leases", "rm", "keep", namespace="nstest"))
    ok(cdpy.ctr("namespaces", "rm", "nstest"))
    assert "nstest" not in ok(cdpy.ctr("namespaces", "ls"))
    # ctr itself ignores NotFound on rm; the status is there for other clients
    with cdpy.client() as client, pytest.raises(NotFound, match='namespace "nstest": not found'):
        client.namespaces.Delete(namespace_pb2.DeleteNamespaceRequest(name="nstest"))


def test_import_check_export_and_rm_collects(
    cdpy: ContainerdPy, image: tuple[testimage.ImageInfo, Path], tmp_path: Path
) -> None:
    info, archive = image
    ns = "imports"
    ok(cdpy.ctr("images", "import", str(archive), namespace=ns))
    listed = rows(ok(cdpy.ctr("images", "ls", namespace=ns)))
    assert [r[0] for r in listed] == [REF]
    check = rows(ok(cdpy.ctr("images", "check", namespace=ns)))
    assert check[0][0] == REF and "complete" in " ".join(check[0])
    digests = {r[0] for r in rows(ok(cdpy.ctr("content", "ls", namespace=ns)))}
    assert {info.manifest_digest, info.config_digest, *info.layer_digests} <= digests
    snaps = rows(ok(cdpy.ctr("snapshots", "ls", namespace=ns)))
    assert [(r[0], r[-1]) for r in snaps] == [(info.diff_ids[0], "Committed")]

    exported = tmp_path / "export.tar"
    ok(cdpy.ctr("images", "export", str(exported), REF, namespace=ns))
    with tarfile.open(exported) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        layer = tar.extractfile(f"blobs/sha256/{info.layer_digests[0].split(':')[1]}")
        assert layer is not None
        assert "sha256:" + hashlib.sha256(layer.read()).hexdigest() == info.layer_digests[0]
    assert [m["digest"] for m in index["manifests"]] == [info.manifest_digest]

    before_blobs = cdpy.blobs()
    assert info.layer_digests[0] in before_blobs
    ok(cdpy.ctr("images", "rm", REF, namespace=ns))
    assert ok(cdpy.ctr("images", "ls", "-q", namespace=ns)).strip() == ""
    assert ok(cdpy.ctr("content", "ls", "-q", namespace=ns)).strip() == ""
    assert ok(cdpy.ctr("snapshots", "ls", namespace=ns)).strip().splitlines()[1:] == []
    assert info.layer_digests[0] not in cdpy.blobs()
    assert cdpy.snapshot_dirs() == []


def test_snapshots_by_hand(
    cdpy: ContainerdPy, image: tuple[testimage.ImageInfo, Path], tmp_path: Path
) -> None:
    """prepare on the unpacked image, mount by hand (the busybox rootfs is there), write,
    commit, view, remove."""
    info, archive = image
    ns = "snaps"
    ok(cdpy.ctr("images", "import", str(archive), namespace=ns))
    base = info.diff_ids[0]
    target = tmp_path / "mnt"
    target.mkdir()
    ok(cdpy.ctr("snapshots", "prepare", "work", base, namespace=ns))
    command = ok(cdpy.ctr("snapshots", "mounts", str(target), "work", namespace=ns)).strip()
    assert command.startswith(f"mount -t overlay overlay {target} -o ") and "lowerdir=" in command
    subprocess.run(command, shell=True, check=True)
    try:
        assert (target / "bin" / "busybox").is_file()
        assert (target / "etc" / "passwd").read_text().startswith("root:")
        (target / "hello").write_text("from the workshop\n")
    finally:
        subprocess.run(["umount", str(target)], check=True)
    # Diff.Diff: the change against the parent, as a gzip'd OCI layer (and a blob)
    diff = subprocess.run(
        ["ctr", "-a", str(cdpy.socket), "-n", ns, "snapshots", "diff", "work"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert diff.returncode == 0, diff.stderr
    with tarfile.open(fileobj=io.BytesIO(diff.stdout), mode="r:gz") as layer:
        assert layer.getnames() == ["hello"]
        assert layer.extractfile("hello").read() == b"from the workshop\n"  # type: ignore[union-attr]
    ok(cdpy.ctr("snapshots", "commit", "work-done", "work", namespace=ns))
    kinds = {r[0]: (r[1], r[-1]) for r in rows(ok(cdpy.ctr("snapshots", "ls", namespace=ns)))}
    assert kinds["work-done"] == (base, "Committed")
    busy = cdpy.ctr("snapshots", "rm", base, namespace=ns)
    assert busy.returncode != 0 and "cannot remove snapshot with child" in busy.stderr
    ok(cdpy.ctr("snapshots", "view", "look", "work-done", namespace=ns))
    command = ok(cdpy.ctr("snapshots", "mounts", str(target), "look", namespace=ns)).strip()
    subprocess.run(command, shell=True, check=True)
    try:
        assert (target / "hello").read_text() == "from the workshop\n"
        assert (target / "bin" / "sh").exists()
    finally:
        subprocess.run(["umount", str(target)], check=True)
    ok(cdpy.ctr("snapshots", "rm", "look", "work-done", namespace=ns))
    ok(cdpy.ctr("images", "rm", REF, namespace=ns))
    assert ok(cdpy.ctr("snapshots", "ls", namespace=ns)).strip().splitlines()[1:] == []
    assert cdpy.snapshot_dirs() == []


def test_leases(cdpy: ContainerdPy) -> None:
    ns = "leasing"
    ok(cdpy.ctr("leases", "create", "--id", "l1", "--expires", "1h", namespace=ns))
    ok(cdpy.ctr("leases", "create", "--id", "l2", "--expires", "0", namespace=ns))
    listed = {r[0]: r for r in rows(ok(cdpy.ctr("leases", "ls", namespace=ns)))}
    assert set(listed) == {"l1", "l2"}
    assert any(field.startswith("containerd.io/gc.expire=") for field in listed["l1"])
    dup = cdpy.ctr("leases", "create", "--id", "l1", namespace=ns)
    assert dup.returncode != 0 and 'lease "l1": already exists' in dup.stderr
    ok(cdpy.ctr("leases", "rm", "l1", "l2", namespace=ns))
    assert rows(ok(cdpy.ctr("leases", "ls", namespace=ns))) == []
    ok(cdpy.ctr("namespaces", "rm", ns))


def test_collection_keeps_roots_and_leased_content(cdpy: ContainerdPy) -> None:
    """A blob from `ctr content ingest` is referenced by nothing: the next collection (any
    delete) removes it, unless it is labelled `containerd.io/gc.root` or held by a lease."""
    ns = "ingesting"

    def ingest(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        done = subprocess.run(
            ["ctr", "-a", str(cdpy.socket), "-n", ns, "content", "ingest",
             "--expected-digest", digest, "--expected-size", str(len(data)), f"ref-{digest}"],
            input=data, capture_output=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return digest

    def collect() -> None:
        ok(cdpy.ctr("leases", "create", "--id", "tick", namespace=ns))
        ok(cdpy.ctr("leases", "rm", "tick", namespace=ns))

    loose, rooted = ingest(b"loose\n" * 100), ingest(b"rooted\n" * 100)
    ok(cdpy.ctr("content", "label", rooted, "containerd.io/gc.root=yes", namespace=ns))
    with cdpy.client(ns) as client:
        with client.temporary_lease() as leased:
            held = leased.write_content("held", iter([b"held\n" * 100]))
            collect()
            present = set(ok(cdpy.ctr("content", "ls", "-q", namespace=ns)).split())
            assert {rooted, held} <= present and loose not in present
        # the lease is gone: so is what only it held
        present = set(ok(cdpy.ctr("content", "ls", "-q", namespace=ns)).split())
        assert held not in present and rooted in present
    assert loose not in cdpy.blobs() and held not in cdpy.blobs()
    ok(cdpy.ctr("content", "rm", rooted, namespace=ns))
    assert rooted not in cdpy.blobs()


def test_flags_alone_place_root_state_and_socket(tmp_path: Path) -> None:
    """containerd's flags without a config file; SIGTERM stops it cleanly."""
    binary = str(Path(sys.executable).parent / "containerd-py")
    sock = tmp_path / "run" / "c.sock"
    env = dict(os.environ, STACKLAB_ROOT=str(tmp_path / "stack"))
    proc = subprocess.Popen(
        [binary, "--root", str(tmp_path / "lib"), "--state", str(tmp_path / "run"),
         "--address", str(sock), "--log-level", "warn"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        version = subprocess.run(
            ["ctr", "-a", str(sock), "version"], capture_output=True, text=True, timeout=10
        )
        assert "v1.6.20-stacklab" in version.stdout, version.stderr
        assert oct(sock.stat().st_mode & 0o777) == "0o660"
        assert (tmp_path / "lib" / "io.containerd.content.v1.content").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
