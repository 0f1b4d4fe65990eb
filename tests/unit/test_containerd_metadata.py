"""containerd-py's metadata layer over a real content store and the native snapshotter: the
namespace rules, and garbage collection by containerd's reference rules (images → content →
labels → snapshots; leases; gc.root), including what a crash leaves on disk."""

import hashlib
from pathlib import Path

import pytest

from containerd_py.content.local import LocalStore
from containerd_py.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from containerd_py.metadata.content import Content
from containerd_py.metadata.db import DB
from containerd_py.metadata.gc import Collector
from containerd_py.metadata.images import Descriptor, Image, Images
from containerd_py.metadata.leases import Leases
from containerd_py.metadata.namespaces import Namespaces
from containerd_py.metadata.snapshots import NamespacedSnapshotter
from containerd_py.snapshots import Kind, NativeSnapshotter


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = DB(str(root / "meta.db"))
        self.store = LocalStore(str(root / "content"))
        self.backend = NativeSnapshotter(str(root / "native"))
        self.collector = Collector(self.db, self.store, {"native": self.backend})
        self.content = Content(self.db, self.store)
        self.images = Images(self.db)
        self.leases = Leases(self.db)
        self.namespaces = Namespaces(self.db)
        self.snapshots = NamespacedSnapshotter(self.db, "native", self.backend)

    def blob(self, ns: str, data: bytes, labels: dict[str, str] | None = None) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        writer = self.content.writer(ns, f"ref-{digest}", len(data), digest, None)
        writer.write(data)
        writer.commit(len(data), digest, labels or {})
        writer.close()
        return digest

    def close(self) -> None:
        self.backend.close()
        self.db.close()


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    s = Stack(tmp_path)
    yield s  # type: ignore[misc]
    s.close()


def image(name: str, digest: str) -> Image:
    return Image(name, Descriptor("application/vnd.oci.image.manifest.v1+json", digest, 10))


def test_namespaces_are_created_on_use_and_deleted_only_empty(stack: Stack) -> None:
    digest = stack.blob("one", b"hello")
    assert [name for name, _ in stack.namespaces.list()] == ["one"]
    with pytest.raises(FailedPrecondition, match="still has blobs"):
        stack.namespaces.delete("one")
    stack.content.delete("one", digest)
    stack.namespaces.delete("one")
    with pytest.raises(NotFound):
        stack.namespaces.delete("one")
    with pytest.raises(InvalidArgument):
        stack.namespaces.create("bad/name", {})


def test_content_is_per_namespace_but_stored_once(stack: Stack) -> None:
    a = stack.blob("a", b"shared bytes")
    b = stack.blob("b", b"shared bytes")
    assert a == b and [i.digest for i in stack.store.walk()] == [a]
    with pytest.raises(NotFound):
        stack.content.info("c", a)
    with pytest.raises(AlreadyExists):
        stack.content.writer("a", "again", 0, a, None)


def test_images_keep_their_tree_and_deleting_the_image_collects_it(stack: Stack) -> None:
    layer = stack.blob("ns", b"layer bytes")
    config = stack.blob("ns", b"config", {"containerd.io/gc.ref.snapshot.native": "chain"})
    manifest = stack.blob(
        "ns",
        b"manifest",
        {"containerd.io/gc.ref.content.l.0": layer, "containerd.io/gc.ref.content.config": config},
    )
    stack.snapshots.prepare("ns", "extract", "", {}, None)
    stack.snapshots.commit("ns", "chain", "extract", {}, None)
    stack.snapshots.prepare("ns", "child-work", "chain", {}, None)
    stack.snapshots.commit("ns", "child", "child-work", {}, None)
    loose = stack.blob("ns", b"nobody wants me")
    stack.images.create("ns", image("img", manifest))

    stack.collector.collect()
    assert {i.digest for i in stack.content.walk("ns")} == {layer, config, manifest}
    assert loose not in {i.digest for i in stack.store.walk()}
    assert [i.name for i in stack.snapshots.walk("ns")] == ["chain"]  # "child" was unreferenced
    assert stack.snapshots.stat("ns", "chain").kind == Kind.COMMITTED

    stack.images.delete("ns", "img")
    stack.collector.collect()
    assert list(stack.store.walk()) == [] and list(stack.backend.walk()) == []


def test_leases_hold_until_deleted_and_expired_leases_do_not(stack: Stack) -> None:
    stack.leases.create("ns", "hold", {})
    stack.leases.create("ns", "old", {"containerd.io/gc.expire": "2000-01-01T00:00:00Z"})
    held = stack.blob("ns", b"held")
    stack.leases.add_resource("ns", "hold", "content", held)
    stale = stack.blob("ns", b"stale")
    stack.leases.add_resource("ns", "old", "content", stale)
    stack.collector.collect()
    assert [i.digest for i in stack.content.walk("ns")] == [held]
    assert [lease.id for lease in stack.leases.find("ns")] == ["hold"]
    stack.leases.delete("ns", "hold")
    stack.collector.collect()
    assert list(stack.store.walk()) == []


def test_gc_root_label_keeps_content(stack: Stack) -> None:
    kept = stack.blob("ns", b"keep me", {"containerd.io/gc.root": "yes"})
    stack.collector.collect()
    assert [i.digest for i in stack.content.walk("ns")] == [kept]


def test_startup_collection_removes_what_a_crash_left(stack: Stack) -> None:
    """A blob committed to disk without its record, and a backend snapshot without a row, are
    what a daemon killed between the two steps leaves; the start-up collection removes them."""
    writer = stack.store.writer("orphan")
    writer.write(b"orphan bytes")
    writer.commit()
    writer.close()
    stack.backend.prepare("ns/99/orphan")
    recorded = stack.blob("ns", b"recorded", {"containerd.io/gc.root": "1"})
    stack.collector.collect()
    assert [i.digest for i in stack.store.walk()] == [recorded]
    assert list(stack.backend.walk()) == []


def test_snapshot_rules(stack: Stack) -> None:
    stack.snapshots.prepare("ns", "base-work", "", {}, None)
    with pytest.raises(AlreadyExists):
        stack.snapshots.prepare("ns", "base-work", "", {}, None)
    stack.snapshots.commit("ns", "base", "base-work", {}, None)
    with pytest.raises(NotFound, match="parent snapshot missing does not exist"):
        stack.snapshots.prepare("ns", "x", "missing", {}, None)
    stack.snapshots.prepare("ns", "child", "base", {}, None)
    with pytest.raises(FailedPrecondition, match="cannot remove snapshot with child"):
        stack.snapshots.remove("ns", "base")
    # namespaces do not see each other's keys
    with pytest.raises(NotFound):
        stack.snapshots.stat("other", "base")
    stack.snapshots.remove("ns", "child")
    stack.snapshots.remove("ns", "base")
    stack.collector.collect()
    assert list(stack.backend.walk()) == []
