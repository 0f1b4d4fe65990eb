"""containerd-py under stress: SIGKILL in the middle of a large pull, a trace through a pull,
and hostile input (layers that try to write outside their snapshot, a blob that is not what
it claims) — each refused with the right status, nothing left behind."""

import hashlib
import io
import os
import signal
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from containerd_py_daemon import ContainerdPy, start_containerd_py

from containerd_py.api.types import descriptor_pb2
from containerd_py.client.client import Client
from containerd_py.client.pull import pull
from containerd_py.client.remotes.hosts import configure_hosts
from containerd_py.client.remotes.resolver import Resolver
from containerd_py.errdefs import ContainerdError, FailedPrecondition, InvalidArgument
from stacklab import testimage, tracing

sys.path.insert(0, str(Path(__file__).parent.parent))
import registry as reg

pytestmark = [pytest.mark.root, pytest.mark.interop]

BIG = 48 << 20  # big enough that a pull is well under way when it is killed
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"


@pytest.fixture
def cdpy(tmp_path: Path) -> Iterator[ContainerdPy]:
    with start_containerd_py(tmp_path / "cdpy") as cd:
        yield cd


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_blobs(cd: ContainerdPy) -> set[str]:
    """Every blob on disk hashes to its name (nothing half-written is ever a blob)."""
    found = set()
    for digest in cd.blobs():
        path = cd.content_root / "blobs" / "sha256" / digest.split(":")[1]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        assert "sha256:" + h.hexdigest() == digest, f"{path} does not match its digest"
        found.add(digest)
    return found


def test_sigkill_during_a_large_pull_then_resume(cdpy: ContainerdPy, tmp_path: Path) -> None:
    if reason := reg.missing():
        pytest.skip(reason)
    big = os.urandom(BIG)
    info = testimage.build_image_layout(
        tmp_path / "big", "docker.io/library/big:latest", [[("big.bin", big)]]
    )
    with reg.Registry("plain") as r:
        reg.push_layout(r.url, info.layout, "library/big", "latest")
        ref = f"{r.host}/library/big:latest"
        big_layer = info.layer_digests[-1]
        killed = threading.Event()

        def kill_midway(key: str, done: int, total: int) -> None:
            if key == f"layer-{big_layer}" and done > total // 3 and not killed.is_set():
                killed.set()
                os.kill(cdpy.proc.pid, signal.SIGKILL)

        client, res = cdpy.client("pulls"), Resolver(hosts=configure_hosts(plain_http=True))
        with client, res, pytest.raises(ContainerdError):
            pull(client, ref, resolver=res, progress=kill_midway)
        assert killed.is_set()
        cdpy.proc.wait(10)
        assert big_layer not in verify_blobs(cdpy)

        cdpy.start()
        assert big_layer not in cdpy.ctr("content", "ls", "-q", namespace="pulls").stdout
        active = cdpy.ctr("content", "active", namespace="pulls").stdout
        assert f"layer-{big_layer}" in active  # the partial ingest survived, to be resumed
        with (
            cdpy.client("pulls") as client,
            Resolver(hosts=configure_hosts(plain_http=True)) as res,
        ):
            image = pull(client, ref, resolver=res)
            assert image.target.digest == info.manifest_digest
        assert big_layer in verify_blobs(cdpy)
        check = cdpy.ctr("images", "check", namespace="pulls").stdout
        assert "complete" in check
        assert cdpy.ctr("content", "active", namespace="pulls").stdout.strip().count("\n") == 0
        assert cdpy.ctr("images", "rm", ref, namespace="pulls").returncode == 0
    # The killed pull's lease outlived it (it expires in a day, as containerd's would) and
    # still holds what that pull fetched; removing it frees everything.
    leases = cdpy.ctr("leases", "ls", "-q", namespace="pulls").stdout.split()
    assert len(leases) == 1
    assert cdpy.ctr("leases", "rm", *leases, namespace="pulls").returncode == 0
    assert verify_blobs(cdpy) == set() and cdpy.snapshot_dirs() == []


def test_traceparent_reaches_every_rpc_of_a_pull(cdpy: ContainerdPy, tmp_path: Path) -> None:
    if reason := reg.missing():
        pytest.skip(reason)
    info = testimage.build_image_layout(tmp_path / "busybox")
    with reg.Registry("plain") as r:
        reg.push_layout(r.url, info.layout, "library/busybox", "latest")
        root = tracing.span("test pull", "test", path=str(tmp_path / "test-spans.jsonl"))
        client, res = cdpy.client("traced"), Resolver(hosts=configure_hosts(plain_http=True))
        with root, client, res:
            traced = client.with_traceparent(root.traceparent)
            pull(traced, f"{r.host}/library/busybox:latest", resolver=res)
    spans = [
        s for s in tracing.read_spans(str(cdpy.dir / "trace" / "spans.jsonl"))
        if s["trace_id"] == root.context.trace_id
    ]  # fmt: skip
    names = {s["name"] for s in spans}
    assert {"Leases.Create", "Content.Write", "Images.Create", "Snapshots.Prepare",
            "Diff.Apply", "Snapshots.Commit", "Leases.Delete"} <= names  # fmt: skip
    assert all(s["parent_id"] == root.context.span_id for s in spans)
    assert all(s["layer"] == "containerd-py" and s["pid"] == cdpy.proc.pid for s in spans)


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def member(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def apply_layer(
    client: Client, layer: bytes, key: str, landed: str | None = None
) -> descriptor_pb2.Descriptor:
    """Apply `layer` to a fresh snapshot; `landed`, if given, must exist inside it after."""
    digest = client.write_content(f"hostile-{key}", iter([layer]), expected=sha256(layer))
    desc = descriptor_pb2.Descriptor(media_type=OCI_TAR, digest=digest, size=len(layer))
    mounts = client.prepare(key)
    try:
        applied = client.apply(desc, mounts)
        if landed is not None:
            (bind,) = mounts  # a snapshot without parents is a bind of its directory
            assert os.path.lexists(Path(bind.source) / landed)
        return applied
    finally:
        client.remove_snapshot(key)


# Each layer tries to write outside its snapshot. Like containerd, names and symlinks are
# resolved as if the snapshot were `/`: the write lands inside, at `landed`. A hardlink to a
# file outside cannot be expressed that way, and is refused.
HOSTILE = [
    ("dotdot", [(member("../../../escaped-dotdot"), b"x")], "escaped-dotdot"),
    ("absolute", [(member("/tmp/escaped-absolute"), b"x")], "tmp/escaped-absolute"),
    (
        "symlink-write",
        [(member("evil", tarfile.SYMTYPE, "/tmp"), b""), (member("evil/escaped-sym"), b"x")],
        "tmp/escaped-sym",
    ),
    (
        "symlink-dotdot",
        [
            (member("up", tarfile.SYMTYPE, "../../../../../../tmp"), b""),
            (member("up/escaped-sym-dotdot"), b"x"),
        ],
        "tmp/escaped-sym-dotdot",
    ),
    ("device", [(member("dev/sda-copy", tarfile.BLKTYPE, mode=0o600), b"")], "dev/sda-copy"),
    (
        "hardlink-out",
        [(member("stolen", tarfile.LNKTYPE, "../../../../../../etc/passwd"), b"")],
        None,
    ),
]


@pytest.mark.parametrize("name,members,landed", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_layers_stay_inside(
    cdpy: ContainerdPy,
    name: str,
    members: list[tuple[tarfile.TarInfo, bytes]],
    landed: str | None,
) -> None:
    before_passwd = Path("/etc/passwd").stat()
    with cdpy.client("hostile") as client:
        if landed is None:
            with pytest.raises(InvalidArgument, match="invalid argument"):
                apply_layer(client, tar_of(*members), f"hostile-{name}")
        else:
            apply_layer(client, tar_of(*members), f"hostile-{name}", landed)
    for escaped in ("escaped-dotdot", "escaped-absolute", "escaped-sym", "escaped-sym-dotdot"):
        assert not (Path("/tmp") / escaped).exists()
        assert not (cdpy.dir / escaped).exists()
    after = Path("/etc/passwd").stat()
    assert (after.st_nlink, after.st_mtime_ns) == (
        before_passwd.st_nlink,
        before_passwd.st_mtime_ns,
    )
    assert cdpy.snapshot_dirs() == []  # the snapshot is gone with its key
    assert str(cdpy.dir) not in Path("/proc/self/mountinfo").read_text()


def test_blob_with_wrong_digest_is_rejected(cdpy: ContainerdPy) -> None:
    data = b"not what it claims\n"
    claimed = sha256(b"something else")
    with cdpy.client("hostile") as client:
        with pytest.raises(FailedPrecondition, match=r"unexpected digest|failed size validation"):
            client.write_content("liar", iter([data]), total=len(data), expected=claimed)
        assert not client.has_content(claimed) and not client.has_content(sha256(data))
    assert verify_blobs(cdpy) == set()
    assert cdpy.ctr("content", "active", namespace="hostile").stdout.count("\n") <= 1
    wrong_size = subprocess.run(
        ["ctr", "-a", str(cdpy.socket), "-n", "hostile", "content", "ingest",
         "--expected-size", "5", "short"],
        input=b"longer than five", capture_output=True,
    )  # fmt: skip
    assert wrong_size.returncode != 0 and b"failed size validation" in wrong_size.stderr
