"""The snapshotter rules, without mounting anything: the storage rules (chains, containerd's
errors and their wording, labels, usage, walk, crash clean-up) on both snapshotters, since
overlay too only makes directories until someone mounts them; then the native snapshotter's
copy of a parent and the mount options each snapshotter hands out."""

from __future__ import annotations

import errno
import os
import random
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from containerd_py.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from containerd_py.snapshots import (
    Info,
    Kind,
    Mount,
    NativeSnapshotter,
    OverlaySnapshotter,
    Snapshotter,
    Usage,
)

MAKERS: dict[str, Callable[[str], Snapshotter]] = {
    "native": NativeSnapshotter,
    "overlayfs": OverlaySnapshotter,
}


@dataclass
class Case:
    name: str
    root: Path
    sn: Snapshotter

    def data(self, n: int) -> Path:
        """Where snapshot id n keeps its files."""
        d = self.root / "snapshots" / str(n)
        return d if self.name == "native" else d / "fs"


@contextmanager
def open_case(tmp_path: Path, name: str) -> Iterator[Case]:
    root = tmp_path / f"io.containerd.snapshotter.v1.{name}"
    sn = MAKERS[name](str(root))
    try:
        yield Case(name, root, sn)
    finally:
        sn.close()


@pytest.fixture(params=sorted(MAKERS))
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    with open_case(tmp_path, request.param) as c:
        yield c


@pytest.fixture
def native(tmp_path: Path) -> Iterator[Case]:
    with open_case(tmp_path, "native") as c:
        yield c


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[Case]:
    with open_case(tmp_path, "overlayfs") as c:
        yield c


def commit_base(c: Case, name: str = "base") -> Path:
    """A committed snapshot (id 1) holding a few files."""
    c.sn.prepare("base-active")
    d = c.data(1)
    (d / "etc").mkdir()
    (d / "etc" / "hostname").write_text("box\n")
    c.sn.commit(name, "base-active")
    return d


# The storage rules, on both snapshotters.


def test_errors_read_like_containerd(case: Case) -> None:
    sn = case.sn
    commit_base(case)
    sn.prepare("active")
    mounts = (
        "failed to get snapshot mount" if case.name == "native" else "failed to get active mount"
    )

    with pytest.raises(
        AlreadyExists, match=r"^failed to create snapshot: snapshot active: already exists$"
    ):
        sn.prepare("active")
    with pytest.raises(
        NotFound, match=r'^failed to create snapshot: missing parent "nope" bucket: not found$'
    ):
        sn.prepare("x", "nope")
    with pytest.raises(
        InvalidArgument,
        match=r'^failed to create snapshot: parent "active" is not committed snapshot: invalid argument$',
    ):
        sn.view("x", "active")
    with pytest.raises(NotFound, match=r"^snapshot does not exist: not found$"):
        sn.stat("nope")
    with pytest.raises(NotFound, match=r"^snapshot does not exist: not found$"):
        sn.usage("nope")
    with pytest.raises(NotFound, match=rf"^{mounts}: snapshot does not exist: not found$"):
        sn.mounts("nope")
    with pytest.raises(
        FailedPrecondition,
        match=rf"^{mounts}: requested snapshot base not active or view: failed precondition$",
    ):
        sn.mounts("base")
    with pytest.raises(NotFound, match=r"^snapshot does not exist: not found$"):
        sn.commit("x", "nope")
    with pytest.raises(
        AlreadyExists, match=r"^failed to commit snapshot: committed snapshot base: already exists$"
    ):
        sn.commit("base", "active")
    with pytest.raises(
        FailedPrecondition,
        match=r'^failed to commit snapshot: snapshot "base" is not active: failed precondition$',
    ):
        sn.commit("again", "base")
    sn.view("v", "base")
    with pytest.raises(
        FailedPrecondition,
        match=r'^failed to commit snapshot: snapshot "v" is not active: failed precondition$',
    ):
        sn.commit("from-view", "v")
    with pytest.raises(NotFound, match=r"^failed to remove: snapshot nope: not found$"):
        sn.remove("nope")
    with pytest.raises(
        FailedPrecondition,
        match=r"^failed to remove: cannot remove snapshot with child: failed precondition$",
    ):
        sn.remove("base")
    # Nothing above changed anything, nor left a directory behind.
    assert [i.name for i in sn.walk()] == ["active", "base", "v"]
    dirs = ["1", "2"] if case.name == "native" else ["1", "2", "3"]  # a native view has none
    assert sorted(os.listdir(case.root / "snapshots")) == dirs


def test_commit_keeps_id_and_replaces_labels(case: Case) -> None:
    sn = case.sn
    sn.prepare("a", labels={"keep": "no", "empty": ""})
    assert sn.stat("a").labels == {"keep": "no"}  # empty values are dropped, as in containerd
    before = sn.stat("a")
    sn.commit("c", "a", labels={"committed": "yes"})
    info = sn.stat("c")
    assert (info.name, info.parent, info.kind) == ("c", "", Kind.COMMITTED)
    assert info.labels == {"committed": "yes"}
    assert info.created_at >= before.created_at and info.updated_at == info.created_at
    with pytest.raises(NotFound):
        sn.stat("a")
    assert case.data(1).is_dir()  # the committed snapshot kept its id and directory
    sn.prepare("a", "c")  # the key is free again
    assert sn.stat("a").parent == "c"
    assert case.data(2).is_dir()


def test_update_labels(case: Case) -> None:
    sn = case.sn
    sn.prepare("a", labels={"x": "1", "y": "2"})
    created = sn.stat("a")

    got = sn.update(Info("a", "", Kind.UNKNOWN, {"z": "3"}))  # no fieldpaths: all labels
    assert got.labels == {"z": "3"}
    assert (got.kind, got.created_at) == (Kind.ACTIVE, created.created_at)
    assert got.updated_at >= created.updated_at

    got = sn.update(Info("a", "", Kind.UNKNOWN, {"w": "4", "z": "ignored"}), ["labels.w"])
    assert got.labels == {"z": "3", "w": "4"}
    got = sn.update(Info("a", "", Kind.UNKNOWN, {}), ["labels.z"])  # absent: deleted
    assert got.labels == {"w": "4"}
    got = sn.update(Info("a", "", Kind.UNKNOWN, {"q": "5"}), ["labels"])
    assert got.labels == {"q": "5"}
    assert sn.stat("a").labels == {"q": "5"}

    with pytest.raises(
        InvalidArgument, match=r'^cannot update "parent" field on snapshot "a": invalid argument$'
    ):
        sn.update(Info("a", "x", Kind.UNKNOWN, {}), ["labels.q", "parent"])
    assert sn.stat("a").labels == {"q": "5"}  # rolled back as a whole
    with pytest.raises(NotFound, match=r"^snapshot does not exist: not found$"):
        sn.update(Info("nope", "", Kind.UNKNOWN, {}))


def expected_usage(path: Path) -> Usage:
    seen: dict[tuple[int, int], int] = {}
    for p in [path, *path.rglob("*")]:
        st = p.lstat()
        seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return Usage(sum(seen.values()), len(seen))


def test_usage(case: Case) -> None:
    sn = case.sn
    sn.prepare("a")
    d = case.data(1)
    (d / "big").write_bytes(b"x" * 100_000)
    os.link(d / "big", d / "big2")  # counted once
    (d / "sub").mkdir()
    os.symlink("big", d / "sub" / "l")
    active = sn.usage("a")
    assert active == expected_usage(d)
    assert active.inodes == 4  # the root, big, sub, l
    assert active.size >= 100_000

    sn.commit("c", "a")
    (d / "late").write_bytes(b"y" * 50_000)  # not counted: committed usage is stored
    assert sn.usage("c") == active
    sn.view("v", "c")
    assert sn.usage("v") == Usage(0, 0)


def test_walk_in_key_order(case: Case) -> None:
    sn = case.sn
    assert list(sn.walk()) == []
    commit_base(case, name="m-base")
    sn.prepare("z")
    sn.view("a", "m-base")
    sn.prepare("B", "m-base")
    assert [(i.name, i.parent, i.kind) for i in sn.walk()] == [
        ("B", "m-base", Kind.ACTIVE),
        ("a", "m-base", Kind.VIEW),
        ("m-base", "", Kind.COMMITTED),
        ("z", "", Kind.ACTIVE),
    ]


def test_remove_deletes_directory(case: Case) -> None:
    sn = case.sn
    commit_base(case)
    sn.prepare("child", "base")
    sn.view("v", "base")
    sn.remove("v")
    sn.remove("child")
    assert sorted(os.listdir(case.root / "snapshots")) == ["1"]
    sn.remove("base")
    assert os.listdir(case.root / "snapshots") == []
    assert list(sn.walk()) == []
    # Ids are never reused, so a stale directory cannot be taken for a new snapshot.
    sn.prepare("base")
    assert case.data(4).is_dir()


def test_state_survives_reopen(tmp_path: Path) -> None:
    for name in MAKERS:
        with open_case(tmp_path, name) as c:
            c.sn.prepare("a", labels={"l": "v"})
            c.sn.commit("c", "a")
            mounts = c.sn.prepare("b", "c")
        with open_case(tmp_path, name) as c:
            assert [(i.name, i.parent, i.labels) for i in c.sn.walk()] == [
                ("b", "c", {}),
                ("c", "", {}),
            ]
            assert c.sn.mounts("b") == mounts


def test_cleanup_removes_orphans(case: Case) -> None:
    commit_base(case)
    snapshots = case.root / "snapshots"
    # What a SIGKILL can leave: a temp dir mid-create, a dir renamed into place whose
    # transaction never committed, a dir set aside mid-remove.
    for orphan in ("new-123", "7", "rm-5-abcd"):
        (snapshots / orphan / "deep").mkdir(parents=True)
        (snapshots / orphan / "deep" / "f").write_text("x")
    case.sn.cleanup()
    assert os.listdir(snapshots) == ["1"]
    assert (case.data(1) / "etc" / "hostname").exists()


def test_reopen_cleans_up(tmp_path: Path) -> None:
    for name in MAKERS:
        with open_case(tmp_path, name) as c:
            commit_base(c)
        (c.root / "snapshots" / "new-crashed").mkdir()
        with open_case(tmp_path, name) as c:
            assert os.listdir(c.root / "snapshots") == ["1"]
            assert c.sn.stat("base").kind == Kind.COMMITTED


def test_create_replaces_uncommitted_dir_of_same_id(case: Case) -> None:
    # A crash after the rename but before the commit leaves snapshots/<id>, and the rolled-back
    # id is handed out again: the new snapshot must not inherit that content.
    (case.data(1) / "stale").mkdir(parents=True)
    case.sn.prepare("a")
    assert os.listdir(case.data(1)) == []


def test_concurrent_threads(case: Case) -> None:
    sn = case.sn
    commit_base(case)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                key = f"t{n}-{i}"
                sn.prepare(key, "base")
                sn.usage(key)
                sn.commit(f"c-{key}", key)
                sn.remove(f"c-{key}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [i.name for i in sn.walk()] == ["base"]
    assert os.listdir(case.root / "snapshots") == ["1"]


# The native snapshotter: a copy of the parent per active snapshot, bind mounts.


def test_native_layout_and_mounts(native: Case) -> None:
    sn, snaps = native.sn, native.root / "snapshots"
    assert stat.S_IMODE((native.root / "metadata.db").stat().st_mode) == 0o600
    assert sn.prepare("a") == [Mount("bind", str(snaps / "1"), ["rbind", "rw"])]
    assert sn.mounts("a") == [Mount("bind", str(snaps / "1"), ["rbind", "rw"])]
    assert stat.S_IMODE((snaps / "1").stat().st_mode) == 0o755
    sn.commit("c", "a")
    assert sn.prepare("b", "c") == [Mount("bind", str(snaps / "2"), ["rbind", "rw"])]
    # A view of a parent reads the parent's directory and has none of its own.
    assert sn.view("v", "c") == [Mount("bind", str(snaps / "1"), ["rbind", "ro"])]
    assert not (snaps / "3").exists()
    assert sn.view("empty") == [Mount("bind", str(snaps / "4"), ["rbind", "ro"])]


def test_native_copies_parent(native: Case) -> None:
    sn = native.sn
    base = commit_base(native)
    (base / "bin").mkdir()
    os.chmod(base / "bin", 0o750)
    (base / "bin" / "tool").write_bytes(b"\x7fELF" + b"x" * 10000)
    os.chmod(base / "bin" / "tool", 0o4755)
    os.link(base / "bin" / "tool", base / "bin" / "tool-link")
    os.symlink("../etc/hostname", base / "bin" / "host")
    os.mkfifo(base / "fifo")
    os.utime(base / "etc" / "hostname", ns=(1_000_000_000, 2_000_000_000))
    os.utime(base / "etc", ns=(3_000_000_000, 4_000_000_000))

    sn.prepare("child", "base")
    child = native.data(2)
    assert (child / "etc" / "hostname").read_text() == "box\n"
    assert stat.S_IMODE((child / "bin").stat().st_mode) == 0o750
    assert stat.S_IMODE((child / "bin" / "tool").stat().st_mode) == 0o4755
    assert (child / "bin" / "tool").stat().st_ino == (child / "bin" / "tool-link").stat().st_ino
    assert (child / "bin" / "tool").stat().st_ino != (base / "bin" / "tool").stat().st_ino
    assert os.readlink(child / "bin" / "host") == "../etc/hostname"
    assert stat.S_ISFIFO((child / "fifo").lstat().st_mode)
    assert (child / "etc" / "hostname").stat().st_mtime_ns == 2_000_000_000
    assert (child / "etc").stat().st_mtime_ns == 4_000_000_000
    # The copy is independent of the parent.
    (child / "etc" / "hostname").write_text("changed\n")
    assert (base / "etc" / "hostname").read_text() == "box\n"


def test_native_copies_xattrs(native: Case) -> None:
    native.sn.prepare("a")
    f = native.data(1) / "f"
    f.write_text("x")
    try:
        os.setxattr(f, "user.stacklab", b"yes")
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            pytest.skip(f"no user xattrs here: {e}")
        raise
    native.sn.commit("base", "a")
    native.sn.prepare("b", "base")
    assert os.getxattr(native.data(2) / "f", "user.stacklab") == b"yes"


@pytest.mark.skipif(os.geteuid() != 0, reason="chown and device nodes need root")
def test_native_copies_owners_and_devices(native: Case) -> None:
    native.sn.prepare("a")
    d = native.data(1)
    (d / "home").mkdir()
    os.chown(d / "home", 1000, 1001)
    os.symlink("nowhere", d / "link")
    os.lchown(d / "link", 1002, 1003)
    os.mknod(d / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chown(d, 5, 6)
    native.sn.commit("base", "a")
    native.sn.prepare("b", "base")
    c = native.data(2)
    assert ((c / "home").stat().st_uid, (c / "home").stat().st_gid) == (1000, 1001)
    assert ((c / "link").lstat().st_uid, (c / "link").lstat().st_gid) == (1002, 1003)
    assert (c / "null").stat().st_rdev == os.makedev(1, 3)
    assert (c.stat().st_uid, c.stat().st_gid) == (5, 6)


def test_native_failed_copy_leaves_nothing(native: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    commit_base(native)

    def no_space(dst: str, src: str) -> None:
        raise OSError(errno.ENOSPC, "no space left on device")

    monkeypatch.setattr("containerd_py.snapshots.native.copy_dir", no_space)
    with pytest.raises(OSError, match="no space"):
        native.sn.prepare("b", "base")
    with pytest.raises(NotFound):
        native.sn.stat("b")
    assert os.listdir(native.root / "snapshots") == ["1"]


# The overlay snapshotter's directories and mount options (mounting them: tests/integration).


def test_overlay_mounts(overlay: Case) -> None:
    sn, snaps = overlay.sn, overlay.root / "snapshots"
    index = ["index=off"] if os.path.exists("/sys/module/overlay/parameters/index") else []

    def fs(n: int) -> str:
        return str(snaps / str(n) / "fs")

    assert sn.prepare("a") == [Mount("bind", fs(1), ["rw", "rbind"])]
    assert sn.view("empty") == [Mount("bind", fs(2), ["ro", "rbind"])]
    sn.commit("l1", "a")
    assert sn.prepare("b", "l1") == [
        Mount(
            "overlay",
            "overlay",
            [*index, f"workdir={snaps}/3/work", f"upperdir={fs(3)}", f"lowerdir={fs(1)}"],
        )
    ]
    assert sn.view("v1", "l1") == [Mount("bind", fs(1), ["ro", "rbind"])]
    sn.commit("l2", "b")
    top = [*index, f"workdir={snaps}/5/work", f"upperdir={fs(5)}", f"lowerdir={fs(3)}:{fs(1)}"]
    assert sn.prepare("c", "l2") == [Mount("overlay", "overlay", top)]
    assert sn.mounts("c") == [Mount("overlay", "overlay", top)]  # nearest parent first
    assert sn.view("v2", "l2") == [
        Mount("overlay", "overlay", [*index, f"lowerdir={fs(3)}:{fs(1)}"])
    ]


def test_overlay_directories(overlay: Case) -> None:
    sn, snaps = overlay.sn, overlay.root / "snapshots"
    sn.prepare("a")
    assert stat.S_IMODE((snaps / "1" / "fs").stat().st_mode) == 0o755 & ~current_umask()
    assert stat.S_IMODE((snaps / "1" / "work").stat().st_mode) == 0o711 & ~current_umask()
    sn.commit("l1", "a")
    sn.view("v", "l1")
    assert sorted(os.listdir(snaps / "2")) == ["fs"]  # a view never writes: no workdir
    if os.geteuid() == 0:
        os.chown(snaps / "1" / "fs", 7, 8)
        sn.prepare("b", "l1")
        st = (snaps / "3" / "fs").stat()
        assert (st.st_uid, st.st_gid) == (7, 8)  # the merged root keeps the parent's owner


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sigkill_leaves_a_consistent_store(tmp_path: Path) -> None:
    # A writer killed at random points; on reopen every snapshot's directory must be whole
    # and every directory must belong to a snapshot.
    script = textwrap.dedent(
        """
        import itertools, os, sys
        from containerd_py.snapshots import NativeSnapshotter, OverlaySnapshotter
        cls = NativeSnapshotter if sys.argv[1] == "native" else OverlaySnapshotter
        sn = cls(sys.argv[2])
        if not any(True for _ in sn.walk()):
            sn.prepare("base-active")
            d = os.path.join(sys.argv[2], "snapshots", "1")
            d = d if sys.argv[1] == "native" else os.path.join(d, "fs")
            for n in range(200):
                with open(os.path.join(d, f"f{n}"), "w") as f:
                    f.write("x" * n)
            sn.commit("base", "base-active")
        print("ready", flush=True)
        for i in itertools.count():
            k = f"{sys.argv[3]}-{i}"
            sn.prepare(f"a{k}", "base")
            sn.view(f"v{k}", "base")
            sn.commit(f"c{k}", f"a{k}")
            sn.remove(f"v{k}")
            if i % 2:
                sn.remove(f"c{k}")
        """
    )
    rng = random.Random(1)
    for name in MAKERS:
        root = tmp_path / f"io.containerd.snapshotter.v1.{name}"
        for run in range(8):
            p = subprocess.Popen(
                [sys.executable, "-c", script, name, str(root), str(run)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0, 0.2))
            assert p.poll() is None  # killed mid-work, not dead of an error
            p.kill()
            p.wait()
            p.stdout.close()
            with open_case(tmp_path, name) as c:
                assert c.sn.stat("base").kind == Kind.COMMITTED
            db = sqlite3.connect(root / "metadata.db")
            try:
                rows = db.execute("SELECT id, kind, parent_id FROM snapshots").fetchall()
            finally:
                db.close()
            has_dir = {
                str(i)
                for i, kind, parent in rows
                if name == "overlayfs" or kind != Kind.VIEW or parent is None
            }
            assert sorted(os.listdir(root / "snapshots")) == sorted(has_dir)
            for i, kind, _ in rows:
                if name == "native" and kind != Kind.VIEW:
                    assert len(os.listdir(root / "snapshots" / str(i))) == 200
