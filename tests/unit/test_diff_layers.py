"""containerd_py.diff without mounts or root: unpack layers into plain directories (whiteouts,
replacement, hostile names rescoped into the root), and write the diff of two trees.

Entries are owned by the user running the tests, so nothing here needs root; ownership,
devices and overlayfs are in tests/integration/test_diff_apply.py.
"""

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from containerd_py.diff import Applied, apply_layer, apply_to_mounts, write_diff
from containerd_py.diff.changes import ChangeKind, changes
from containerd_py.diff.rootpath import clean_parts, root_path
from containerd_py.errdefs import InvalidArgument, NotImplemented_
from containerd_py.mount import Mount, parse_options, readonly

UID, GID = os.getuid(), os.getgid()
T0 = 1_600_000_000


def e(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    mode: int = 0o644,
    link: str = "",
    mtime: int = T0,
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, link, mtime
    info.uid, info.gid = UID, GID
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.pax_headers = pax or {}
    return info, data


def d(name: str, mode: int = 0o755, mtime: int = T0) -> tuple[tarfile.TarInfo, bytes]:
    return e(name, tarfile.DIRTYPE, mode=mode, mtime=mtime)


def tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def apply(blob: bytes, root: Path) -> Applied:
    return apply_layer(io.BytesIO(blob), str(root))


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything about a tree a layer can say, directory times aside."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes(), st.st_mtime_ns)
            else:
                out[rel] = ("special", st.st_mode, st.st_rdev)
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "victim").write_text("untouched")
    return tmp_path / "root"


def outside_untouched(root: Path) -> None:
    out = root.parent / "outside"
    assert sorted(p.name for p in out.iterdir()) == ["victim"]
    assert (out / "victim").read_text() == "untouched"
    assert sorted(p.name for p in root.parent.iterdir()) == ["outside", "root"]


# --- resolving names inside a root ----------------------------------------------------------


def test_clean_parts_never_climbs_above_the_top() -> None:
    assert clean_parts("../../etc/passwd") == ["etc", "passwd"]
    assert clean_parts("/abs//./x/") == ["abs", "x"]
    assert clean_parts("a/b/../../..") == []
    assert clean_parts("./") == []


def test_root_path_bounds_symlinks(root: Path) -> None:
    (root / "d").mkdir()
    os.symlink("/", root / "abs")
    os.symlink("../../../..", root / "d" / "up")
    os.symlink("d/up/etc", root / "chain")
    os.symlink("loop", root / "loop")
    os.symlink("/etc", root / "d" / "abs")
    assert root_path(str(root), ["abs", "etc"]) == f"{root}/etc"
    assert root_path(str(root), ["d", "up", "x"]) == f"{root}/x"
    assert root_path(str(root), ["chain", "x"]) == f"{root}/etc/x"
    assert root_path(str(root), []) == str(root)
    # An absolute target restarts from the root, wherever the link is.
    assert root_path(str(root), ["d", "abs", "x"]) == f"{root}/etc/x"
    with pytest.raises(InvalidArgument, match="too many links"):
        root_path(str(root), ["loop", "x"])


# --- unpacking ------------------------------------------------------------------------------


def test_apply_creates_every_kind_and_returns_the_uncompressed_digest(root: Path) -> None:
    blob = tar(
        d("bin/", mode=0o711, mtime=T0 + 5),
        e("bin/tool", data=b"#!/bin/sh\n", mode=0o4755, mtime=T0 + 1),
        e("bin/sh", tarfile.SYMTYPE, link="tool", mtime=T0 + 2),
        e("bin/hard", tarfile.LNKTYPE, link="bin/tool", mode=0o4755, mtime=T0 + 1),
        e("run/fifo", tarfile.FIFOTYPE, mode=0o600),
        e(
            "etc/xattr",
            data=b"x",
            pax={"SCHILY.xattr.user.note": "hi", "mtime": f"{T0}.123456789"},
        ),
        e("empty", data=b""),
    )
    applied = apply(blob, root)
    assert applied == Applied("sha256:" + hashlib.sha256(blob).hexdigest(), len(blob))
    tool = (root / "bin" / "tool").stat()
    assert stat.S_IMODE(tool.st_mode) == 0o4755
    assert tool.st_mtime_ns == (T0 + 1) * 10**9
    assert tool.st_nlink == 2 and (root / "bin" / "hard").stat().st_ino == tool.st_ino
    assert os.readlink(root / "bin" / "sh") == "tool"
    assert (root / "bin" / "sh").lstat().st_mtime_ns == (T0 + 2) * 10**9
    assert stat.S_ISFIFO((root / "run" / "fifo").lstat().st_mode)
    # Set after its children were written; an implicit parent gets 0755.
    assert (root / "bin").stat().st_mtime_ns == (T0 + 5) * 10**9
    assert stat.S_IMODE((root / "bin").stat().st_mode) == 0o711
    assert stat.S_IMODE((root / "run").stat().st_mode) == 0o755
    assert os.getxattr(root / "etc" / "xattr", "user.note") == b"hi"
    assert (root / "etc" / "xattr").stat().st_mtime_ns == T0 * 10**9 + 123456789


@pytest.mark.parametrize("compress", [gzip.compress, zstandard.compress])
def test_compressed_layers_give_the_uncompressed_digest(
    compress: Callable[[bytes], bytes], tmp_path: Path
) -> None:
    blob = tar(d("a/"), e("a/f", data=os.urandom(300_000)))
    (tmp_path / "plain").mkdir()
    (tmp_path / "packed").mkdir()
    assert apply(compress(blob), tmp_path / "packed") == apply(blob, tmp_path / "plain")
    assert tree(tmp_path / "packed") == tree(tmp_path / "plain")


def test_empty_stream_is_an_empty_layer(root: Path) -> None:
    assert apply(b"", root) == Applied("sha256:" + hashlib.sha256(b"").hexdigest(), 0)
    assert list(root.iterdir()) == []


def test_trailing_bytes_after_the_tar_count_in_the_digest(root: Path) -> None:
    blob = tar(e("f", data=b"1")) + bytes(4096)
    assert apply(blob, root).size == len(blob)


def test_root_entries_are_ignored(root: Path) -> None:
    root.chmod(0o700)
    apply(tar(d("./", mode=0o777), d(".", mode=0o777), e("x", data=b"1")), root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert (root / "x").read_bytes() == b"1"


def test_replacing_what_is_there(root: Path) -> None:
    apply(
        tar(
            d("dir2file/"),
            e("dir2file/child", data=b"c"),
            e("file2dir", data=b"f"),
            d("merged/", mode=0o700),
            e("merged/old", data=b"o"),
            e("link2dir", tarfile.SYMTYPE, link="/"),
        ),
        root,
    )
    apply(
        tar(
            e("dir2file", data=b"now a file"),
            d("file2dir/"),
            d("merged/", mode=0o750),
            e("merged/new", data=b"n"),
            d("link2dir/"),
            e("link2dir/inside", data=b"i"),
        ),
        root,
    )
    assert (root / "dir2file").read_bytes() == b"now a file"
    assert (root / "file2dir").is_dir()
    assert sorted(p.name for p in (root / "merged").iterdir()) == ["new", "old"]
    assert stat.S_IMODE((root / "merged").stat().st_mode) == 0o750
    assert not (root / "link2dir").is_symlink()
    assert (root / "link2dir" / "inside").read_bytes() == b"i"


def test_native_whiteouts_and_opaque_directories(root: Path) -> None:
    apply(
        tar(
            d("keep/"),
            e("keep/a", data=b"a"),
            e("keep/gone", data=b"g"),
            d("tree/"),
            e("tree/x/y", data=b"y"),
            d("opq/"),
            e("opq/lower", data=b"l"),
            d("opq/sub/"),
            e("opq/sub/lower", data=b"l"),
            e("link", tarfile.SYMTYPE, link="keep"),
        ),
        root,
    )
    apply(
        tar(
            e("keep/.wh.gone"),
            e(".wh.tree"),
            e(".wh.link"),
            e(".wh.never-existed"),
            e("opq/new", data=b"n"),  # before the marker: this layer's entries stay
            e("opq/.wh..wh..opq"),
            d("opq/sub/"),
            e("opq/sub/after", data=b"a"),
        ),
        root,
    )
    assert sorted(os.listdir(root)) == ["keep", "opq"]
    assert os.listdir(root / "keep") == ["a"]
    assert sorted(os.listdir(root / "opq")) == ["new", "sub"]
    assert os.listdir(root / "opq" / "sub") == ["after"]


@pytest.mark.parametrize("name", [".wh.", ".wh..", "dir/.wh.."])
def test_invalid_whiteout_names(root: Path, name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid whiteout name"):
        apply(tar(d("dir/"), e(name)), root)


# --- hostile layers: everything lands inside the root ---------------------------------------


@pytest.mark.parametrize(
    ("name", "landed"),
    [
        ("../outside/victim", "outside/victim"),
        ("../../../../outside/victim", "outside/victim"),
        ("/outside/victim", "outside/victim"),
        ("a/../../outside/victim", "outside/victim"),
    ],
)
def test_escaping_names_are_rescoped(root: Path, name: str, landed: str) -> None:
    apply(tar(e(name, data=b"pwned")), root)
    assert (root / landed).read_bytes() == b"pwned"
    outside_untouched(root)


@pytest.mark.parametrize("target", ["/", "..", "../..", "../../outside", "/../outside"])
def test_writing_through_a_symlink_stays_inside(root: Path, target: str) -> None:
    apply(
        tar(
            e("esc", tarfile.SYMTYPE, link=target),
            e("esc/victim", data=b"pwned"),
            e("esc/outside/victim", data=b"pwned"),
            d("esc/newdir/"),
            e("esc/newdir/f", data=b"pwned"),
        ),
        root,
    )
    outside_untouched(root)
    assert os.readlink(root / "esc") == target  # kept: only followed, within the root
    written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert "victim" in {Path(w).name for w in written}


def test_a_symlink_as_last_component_is_replaced_not_followed(root: Path) -> None:
    apply(tar(e("victim", tarfile.SYMTYPE, link="../outside/victim")), root)
    apply(tar(e("victim", data=b"pwned")), root)
    assert not (root / "victim").is_symlink()
    outside_untouched(root)


def test_whiteouts_cannot_reach_outside(root: Path) -> None:
    apply(
        tar(
            e("esc", tarfile.SYMTYPE, link="../outside"),
            e("esc/.wh.victim"),
            e("../outside/.wh.victim"),
            e("/outside/.wh..wh..opq"),
        ),
        root,
    )
    outside_untouched(root)


def test_hardlink_to_a_file_outside_is_refused(root: Path) -> None:
    for link in ["../outside/victim", "/outside/victim", str(root.parent / "outside/victim")]:
        with pytest.raises(InvalidArgument, match="failed to create hardlink"):
            apply(tar(e("h", tarfile.LNKTYPE, link=link)), root)
    outside_untouched(root)


def test_hardlink_through_a_symlink_links_inside(root: Path) -> None:
    """The link's target is resolved like any name: through `esc` it reaches root/outside."""
    (root / "outside").mkdir()
    (root / "outside" / "victim").write_text("decoy inside the root")
    apply(
        tar(
            e("esc", tarfile.SYMTYPE, link="../outside"),
            e("h", tarfile.LNKTYPE, link="esc/victim"),
            e("h2", tarfile.LNKTYPE, link="../../outside/victim"),
        ),
        root,
    )
    decoy = (root / "outside" / "victim").stat().st_ino
    assert (root / "h").stat().st_ino == decoy
    assert (root / "h2").stat().st_ino == decoy
    assert (root.parent / "outside" / "victim").stat().st_nlink == 1


def test_hardlink_to_a_symlink_is_a_symlink(root: Path) -> None:
    apply(
        tar(
            e("sym", tarfile.SYMTYPE, link="../outside/victim"),
            e("h", tarfile.LNKTYPE, link="sym"),
        ),
        root,
    )
    assert os.readlink(root / "h") == "../outside/victim"
    outside_untouched(root)


def test_symlink_loop_is_refused(root: Path) -> None:
    with pytest.raises(InvalidArgument, match="too many links"):
        apply(
            tar(e("a", tarfile.SYMTYPE, link="b"), e("b", tarfile.SYMTYPE, link="a"), e("a/x")),
            root,
        )


def test_damaged_archives(root: Path) -> None:
    blob = tar(e("one", data=b"1" * 1000), e("two", data=b"2" * 1000))
    with pytest.raises(InvalidArgument, match="invalid layer tar"):
        apply(blob[:1700], root)  # cut inside the second file
    broken = bytearray(blob)
    broken[1536 + 10] ^= 0xFF  # the second header's name: its checksum no longer matches
    with pytest.raises(InvalidArgument, match="damaged tar header"):
        apply(bytes(broken), root)
    with pytest.raises(InvalidArgument, match="invalid layer tar"):
        apply(b"not a tar at all", root)
    with pytest.raises(InvalidArgument, match="unhandled tar header type"):
        apply(tar(e("vol", b"V")), root)


def test_unknown_media_type_is_not_implemented(root: Path) -> None:
    with pytest.raises(NotImplemented_, match="unrecognised mediatype"):
        apply_to_mounts([], io.BytesIO(tar()), "application/json")


# --- diffs ----------------------------------------------------------------------------------


def build_lower(p: Path) -> None:
    (p / "etc").mkdir(parents=True)
    (p / "etc" / "keep").write_text("same")
    (p / "etc" / "change").write_text("old")
    (p / "etc" / "chmod").write_text("x")
    (p / "gone").mkdir()
    (p / "gone" / "deep").mkdir()
    (p / "gone" / "deep" / "f").write_text("f")
    (p / "dir2file").mkdir()
    (p / "dir2file" / "f").write_text("f")
    (p / "file2dir").write_text("f")
    (p / "a.b").write_text("sorts after a/")
    (p / "a").mkdir()
    (p / "a" / "x").write_text("x")
    os.symlink("target1", p / "sym")
    os.link(p / "etc" / "keep", p / "etc" / "keep-link")


def copy_tree(src: Path, dst: Path) -> None:
    """cp -a: the same times to the nanosecond and the same hardlinks, like an overlay's view
    of its lower before anything changed."""
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def build_upper(p: Path) -> None:
    (p / "etc" / "change").write_text("new!")
    (p / "etc" / "chmod").chmod(0o600)
    (p / "etc" / "added").write_text("added")
    for f in (p / "gone").rglob("*"):
        if f.is_file():
            f.unlink()
    for sub in sorted((p / "gone").rglob("*"), reverse=True):
        sub.rmdir()
    (p / "gone").rmdir()
    (p / "dir2file" / "f").unlink()
    (p / "dir2file").rmdir()
    (p / "dir2file").write_text("file now")
    (p / "file2dir").unlink()
    (p / "file2dir").mkdir()
    (p / "file2dir" / "in").write_text("in")
    (p / "a" / "x").unlink()
    (p / "sym").unlink()
    os.symlink("target2", p / "sym")
    (p / "new" / "nested").mkdir(parents=True)
    (p / "new" / "nested" / "file").write_text("n")
    os.link(p / "etc" / "added", p / "new" / "added-link")


def test_changes_in_apply_order(tmp_path: Path) -> None:
    build_lower(tmp_path / "lower")
    copy_tree(tmp_path / "lower", tmp_path / "upper")
    build_upper(tmp_path / "upper")
    got = [(c.kind, c.path) for c in changes(str(tmp_path / "lower"), str(tmp_path / "upper"))]
    assert (ChangeKind.DELETE, "/gone") in got
    assert not any(p.startswith("/gone/") for _, p in got)  # implied by /gone
    assert (ChangeKind.MODIFY, "/dir2file") in got
    assert not any(p == "/dir2file/f" for _, p in got)
    assert (ChangeKind.DELETE, "/a/x") in got
    assert got.index((ChangeKind.DELETE, "/a/x")) < got.index((ChangeKind.MODIFY, "/etc/change"))
    assert (ChangeKind.ADD, "/new/nested/file") in got
    assert (ChangeKind.UNMODIFIED, "/etc/keep") in got  # hardlinked: reported for the tar
    paths = [p for _, p in got]
    assert paths == sorted(paths, key=lambda p: p.encode().split(b"/"))


def test_write_diff_then_apply_gives_the_upper(tmp_path: Path) -> None:
    build_lower(tmp_path / "lower")
    copy_tree(tmp_path / "lower", tmp_path / "upper")
    copy_tree(tmp_path / "lower", tmp_path / "target")
    build_upper(tmp_path / "upper")
    out = io.BytesIO()
    written = write_diff(str(tmp_path / "lower"), str(tmp_path / "upper"), out)
    blob = out.getvalue()
    assert written == Applied("sha256:" + hashlib.sha256(blob).hexdigest(), len(blob))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        names = tf.getnames()
    assert ".wh.gone" in names and "a/.wh.x" in names
    assert "etc" in names  # the parent of a change, so it keeps its owner and mode
    assert "etc/keep" not in names  # unchanged, hardlinks and all
    assert apply(blob, tmp_path / "target") == written

    def comparable(p: Path) -> dict[str, tuple[object, ...]]:
        # A tar keeps whole seconds: compare file times at that precision.
        return {
            k: (*v[:3], v[3] // 10**9) if v[0] == "file" else v  # type: ignore[operator]
            for k, v in tree(p).items()
        }

    assert comparable(tmp_path / "target") == comparable(tmp_path / "upper")
    assert (tmp_path / "target" / "new" / "added-link").stat().st_ino == (
        tmp_path / "target" / "etc" / "added"
    ).stat().st_ino


def test_diff_of_identical_trees_is_an_empty_tar(tmp_path: Path) -> None:
    build_lower(tmp_path / "a")
    out = io.BytesIO()
    write_diff(str(tmp_path / "a"), str(tmp_path / "a"), out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        assert tf.getnames() == []


# --- mount options --------------------------------------------------------------------------


def test_parse_options() -> None:
    assert parse_options(["rbind", "ro", "nosuid", "rprivate", "mode=755"]) == (
        0x1000 | 0x4000 | 1 | 2 | (1 << 18),
        "mode=755",
    )
    assert parse_options(["ro", "rw", "defaults"]) == (0, "")
    assert parse_options(["lowerdir=/a:/b", "index=off"]) == (0, "lowerdir=/a:/b,index=off")


def test_readonly_mounts() -> None:
    ov = Mount("overlay", "overlay", ["workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2", "index=off"])
    assert readonly([ov]) == [Mount("overlay", "overlay", ["lowerdir=/u:/l1:/l2", "index=off"])]
    bind = Mount("bind", "/src", ["rbind", "rw"])
    assert readonly([bind]) == [Mount("bind", "/src", ["rbind", "ro"])]
