"""The local content store: blobs, resumable ingests, and what a SIGKILL leaves behind."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from containerd_py.content import LocalStore
from containerd_py.errdefs import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotImplemented_,
    Unavailable,
)

REPO = Path(__file__).resolve().parents[2]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "io.containerd.content.v1.content"


@pytest.fixture
def store(root: Path) -> LocalStore:
    s = LocalStore(str(root))
    s.lock_wait = 0.0  # these tests want Unavailable at once
    return s


def blobs(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "blobs" / "sha256").iterdir())


def commit(store: LocalStore, ref: str, data: bytes) -> str:
    with store.writer(ref, len(data), digest_of(data)) as w:
        w.write(data)
        return w.commit(len(data), digest_of(data))


def test_write_commit_read_walk_delete(store: LocalStore, root: Path) -> None:
    data = os.urandom(300_000)
    dgst = digest_of(data)
    before = time.time_ns()
    with store.writer("ref-1", total=len(data)) as w:
        assert w.ref == "ref-1"
        w.write(data[:1000])
        w.write(data[1000:])
        st = w.status()
        assert (st.ref, st.offset, st.total) == ("ref-1", len(data), len(data))
        assert w.digest() == dgst
        assert w.commit(len(data), dgst) == dgst
        assert w.digest() == dgst  # the service reads it after the commit

    info = store.info(dgst)
    assert (info.digest, info.size) == (dgst, len(data))
    assert info.created_at >= before
    assert store.read_at(dgst, 0, len(data)) == data
    assert store.read_at(dgst, 10, 5) == data[10:15]
    assert store.read_at(dgst, len(data) - 3, 100) == data[-3:]
    assert store.read_at(dgst, len(data) + 5, 10) == b""
    with store.open(dgst) as f:
        assert f.read() == data
    assert Path(store.blob_path(dgst)).read_bytes() == data
    assert os.stat(store.blob_path(dgst)).st_mode & 0o222 == 0  # read-only, like containerd's
    assert [i.digest for i in store.walk()] == [dgst]
    assert store.list_statuses() == []
    assert os.listdir(root / "ingest") == []

    store.delete(dgst)
    assert list(store.walk()) == []
    for call in (store.info, store.open, store.delete):
        with pytest.raises(NotFound, match=f"content {dgst}"):
            call(dgst)


def test_empty_blob(store: LocalStore) -> None:
    assert commit(store, "empty", b"") == digest_of(b"")
    assert store.info(digest_of(b"")).size == 0


@pytest.mark.parametrize(
    ("digest", "error", "reason"),
    [
        ("sha256:abc", InvalidArgument, "invalid checksum digest length"),
        ("sha256:" + "G" * 64, InvalidArgument, "invalid checksum digest format"),
        ("nocolon", InvalidArgument, "invalid checksum digest format"),
        ("md5:" + "0" * 32, InvalidArgument, "unsupported digest algorithm"),
        ("sha512:" + "0" * 128, NotImplemented_, "not supported"),
    ],
)
def test_invalid_digests(
    store: LocalStore, digest: str, error: type[Exception], reason: str
) -> None:
    with pytest.raises(error, match=reason):
        store.info(digest)
    with pytest.raises(error):
        store.writer("ref", expected=digest)


def test_digest_mismatch_keeps_the_ingest(store: LocalStore, root: Path) -> None:
    wrong = digest_of(b"something else")
    w = store.writer("ref")
    w.write(b"hello")
    with pytest.raises(FailedPrecondition) as err:
        w.commit(5, wrong)
    assert str(err.value) == f"unexpected commit digest {digest_of(b'hello')}, expected {wrong}"
    with pytest.raises(FailedPrecondition, match="closed writer"):
        w.write(b"more")
    assert blobs(root) == []
    assert store.status("ref").offset == 5  # as containerd: kept to resume or abort
    with store.writer("ref") as again:  # the failed commit released the ref
        assert again.status().offset == 5
        assert again.commit(5, digest_of(b"hello")) == digest_of(b"hello")


def test_expected_from_writer_is_checked_at_commit(store: LocalStore) -> None:
    w = store.writer("ref", expected=digest_of(b"abc"))
    w.write(b"abd")
    with pytest.raises(FailedPrecondition, match="unexpected commit digest"):
        w.commit()


def test_size_mismatch(store: LocalStore, root: Path) -> None:
    w = store.writer("ref")
    w.write(b"12345")
    with pytest.raises(FailedPrecondition, match="unexpected commit size 5, expected 6"):
        w.commit(6)
    assert blobs(root) == []
    assert store.status("ref").offset == 5


def test_already_exists(store: LocalStore, root: Path) -> None:
    dgst = commit(store, "first", b"data")
    with pytest.raises(AlreadyExists, match=f"content {dgst}"):
        store.writer("second", expected=dgst)
    assert store.list_statuses() == []

    # Without an expectation the collision shows at commit, which drops the ingest.
    w = store.writer("third")
    w.write(b"data")
    with pytest.raises(AlreadyExists, match=f"content {dgst}"):
        w.commit()
    assert store.list_statuses() == []
    assert os.listdir(root / "ingest") == []
    assert blobs(root) == [dgst.removeprefix("sha256:")]


def test_resume_after_an_abandoned_writer(root: Path) -> None:
    data = os.urandom(3 << 20)
    first = LocalStore(str(root))
    w = first.writer("layer", total=len(data))
    w.write(data[:1_234_567])
    started = w.status().started_at
    del w  # never closed, as if the daemon died

    store = LocalStore(str(root))  # the restarted daemon
    st = store.status("layer")
    assert (st.ref, st.offset, st.total, st.started_at) == ("layer", 1_234_567, len(data), started)
    with store.writer("layer", total=len(data)) as w:
        assert w.status().offset == 1_234_567
        assert w.digest() == digest_of(data[:1_234_567])
        w.write(data[1_234_567:])
        assert w.commit(len(data), digest_of(data)) == digest_of(data)


def test_resume_after_close(store: LocalStore) -> None:
    with store.writer("ref") as w:
        w.write(b"abc")
    assert store.status("ref").updated_at >= store.status("ref").started_at
    with store.writer("ref", expected=digest_of(b"abcdef")) as w:
        w.write(b"def")
        assert w.commit() == digest_of(b"abcdef")


def test_resume_with_another_total_starts_over(store: LocalStore) -> None:
    with store.writer("ref", total=10) as w:
        w.write(b"abc")
    with store.writer("ref", total=20) as w:
        assert (w.status().offset, w.status().total) == (0, 20)
    with store.writer("ref", total=0) as w:  # no total: keep the known one
        assert w.status().total == 20


def test_truncate(store: LocalStore) -> None:
    with store.writer("ref") as w:
        w.write(b"garbage from a first attempt")
        w.truncate(0)
        assert (w.status().offset, w.digest()) == (0, digest_of(b""))
        w.write(b"hello world")
        w.truncate(5)
        assert w.digest() == digest_of(b"hello")
        with pytest.raises(InvalidArgument):
            w.truncate(6)
        w.write(b", there")
        assert w.commit(12) == digest_of(b"hello, there")
    assert store.read_at(digest_of(b"hello, there"), 0, 100) == b"hello, there"


def test_locked_ref(store: LocalStore) -> None:
    w = store.writer("ref")
    with pytest.raises(Unavailable, match=r"^ref ref locked for [0-9.]+s \(since "):
        store.writer("ref")
    store.writer("other").close()  # other refs are independent
    w.close()
    w.close()  # idempotent
    store.writer("ref").close()


def test_locked_ref_waits_briefly_for_its_holder(store: LocalStore) -> None:
    store.lock_wait = 5.0
    w = store.writer("ref")
    threading.Timer(0.1, w.close).start()
    start = time.monotonic()
    store.writer("ref").close()
    assert time.monotonic() - start < 4


def test_abort(store: LocalStore, root: Path) -> None:
    with store.writer("ref") as w:
        w.write(b"x")
    store.abort("ref")
    with pytest.raises(NotFound, match='ingest ref "ref"'):
        store.status("ref")
    with pytest.raises(NotFound):
        store.abort("ref")
    assert os.listdir(root / "ingest") == []

    # An abort does not wait for the writer; its commit then finds nothing to commit.
    w = store.writer("busy")
    w.write(b"y")
    store.abort("busy")
    with pytest.raises(NotFound, match='ingest ref "busy"'):
        w.commit()
    assert blobs(root) == []
    store.writer("busy").close()  # and the ref is free again


def test_list_statuses(store: LocalStore) -> None:
    assert store.list_statuses() == []
    for ref, size in (("b", 2), ("a", 1), ("c", 3)):
        with store.writer(ref, total=10) as w:
            w.write(b"x" * size)
    assert [(s.ref, s.offset, s.total) for s in store.list_statuses()] == [
        ("a", 1, 10),
        ("b", 2, 10),
        ("c", 3, 10),
    ]
    with pytest.raises(NotFound):
        store.status("d")
    with pytest.raises(InvalidArgument):
        store.writer("")


def test_start_cleans_what_a_crash_left(root: Path) -> None:
    store = LocalStore(str(root))
    with store.writer("kept") as w:
        w.write(b"abc")
    ingest = root / "ingest"
    kept = next(ingest.iterdir())
    (kept / "updatedat.tmp").write_bytes(b"half")  # killed while replacing updatedat
    (ingest / (kept.name + ".x1y2z3")).mkdir()  # killed while creating an ingest
    (ingest / (kept.name + ".dead.tmp")).mkdir()  # killed while removing one
    committed = ingest / ("f" * 64)  # killed after the commit's rename
    committed.mkdir()
    (committed / "ref").write_bytes(b"gone")

    store = LocalStore(str(root))
    assert sorted(p.name for p in ingest.iterdir()) == [kept.name]
    assert sorted(p.name for p in kept.iterdir()) == ["data", "ref", "startedat", "updatedat"]
    assert [s.ref for s in store.list_statuses()] == ["kept"]


def test_concurrent_writers(store: LocalStore) -> None:
    payloads = {f"ref-{i}": os.urandom(200_000 + i) for i in range(8)}
    results: dict[str, str] = {}

    def run(ref: str) -> None:
        data = payloads[ref]
        with store.writer(ref, len(data)) as w:
            for i in range(0, len(data), 4096):
                w.write(data[i : i + 4096])
            results[ref] = w.commit(len(data), digest_of(data))

    threads = [threading.Thread(target=run, args=(ref,)) for ref in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {ref: digest_of(data) for ref, data in payloads.items()}
    assert sorted(i.digest for i in store.walk()) == sorted(results.values())


CHUNK = 1 << 20


def stream(n_chunks: int) -> bytes:
    """The deterministic data the killed child writes, one chunk at a time."""
    return b"".join(
        hashlib.sha256(str(i).encode()).digest() * (CHUNK // 32) for i in range(n_chunks)
    )


# Writes the stream until killed: the test sends SIGKILL as soon as the first chunks are in.
CHILD = textwrap.dedent(
    f"""
    import hashlib, sys
    from containerd_py.content import LocalStore

    w = LocalStore(sys.argv[1]).writer("layer")
    for i in range(1 << 20):
        w.write(hashlib.sha256(str(i).encode()).digest() * ({CHUNK} // 32))
        if i == 2:
            print("writing", flush=True)
    """
)


def test_sigkill_mid_write_leaves_a_resumable_ingest_and_no_blob(root: Path) -> None:
    LocalStore(str(root))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)], cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"writing\n"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL

    store = LocalStore(str(root))
    assert blobs(root) == []
    st = store.status("layer")
    assert st.offset >= 3 * CHUNK
    assert st.offset == os.path.getsize(next((root / "ingest").iterdir()) / "data")

    data = stream(st.offset // CHUNK + 2)
    with store.writer("layer") as w:
        assert w.status().offset == st.offset
        assert w.digest() == digest_of(data[: st.offset])
        w.write(data[st.offset :])
        assert w.commit(len(data), digest_of(data)) == digest_of(data)
    assert blobs(root) == [digest_of(data).removeprefix("sha256:")]
    assert store.info(digest_of(data)).size == len(data)
