"""containerd_py.diff and containerd_py.mount as root against the real kernel: layers applied
natively and into overlayfs upperdirs (then mounted, and compared), owners and device nodes,
hostile layers aimed at the host, diffs of mounted snapshots, and mount(2) itself.

Every test checks that it leaves no mount behind.
"""

import gzip
import hashlib
import io
import os
import stat
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zstandard

from containerd_py.diff import Applied, apply_layer, apply_to_mounts, diff_mounts, write_diff
from containerd_py.errdefs import ContainerdError, InvalidArgument, NotImplemented_
from containerd_py.mount import Mount, mount_all, temp_mount, unmount_all

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mounts, owners, device nodes"),
]

OCI = "application/vnd.oci.image.layer.v1.tar"
T0 = 1_600_000_000


def e(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    mode: int = 0o644,
    link: str = "",
    owner: tuple[int, int] = (0, 0),
    dev: tuple[int, int] = (0, 0),
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, link, T0
    info.uid, info.gid = owner
    info.devmajor, info.devminor = dev
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.pax_headers = pax or {}
    return info, data


def d(
    name: str, mode: int = 0o755, owner: tuple[int, int] = (0, 0)
) -> tuple[tarfile.TarInfo, bytes]:
    return e(name, tarfile.DIRTYPE, mode=mode, owner=owner)


def tar(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def apply(blob: bytes, root: Path, **kw: object) -> Applied:
    return apply_layer(io.BytesIO(blob), str(root), **kw)  # type: ignore[arg-type]


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """All a layer can say about a tree: type, mode, owner, content or target, device, file
    times and file capabilities (directory times follow whatever was created in them)."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            meta = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            rel = p.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = (*meta, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = meta
            elif stat.S_ISREG(st.st_mode):
                try:
                    cap = os.getxattr(p, "security.capability")
                except OSError:
                    cap = b""
                out[rel] = (*meta, p.read_bytes(), st.st_mtime_ns // 10**9, cap)
            else:
                out[rel] = (*meta, st.st_rdev)
    return out


def mountpoints() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4].encode().decode("unicode_escape") for line in f}


@pytest.fixture(autouse=True)
def no_mount_left(tmp_path: Path) -> Iterator[None]:
    """Ours only: under tmp_path, or the temporary mounts of containerd_py.mount.temp_mount.
    Other processes on the host (a daemon, a bench) mount and unmount as they please."""
    ours = (str(tmp_path), os.path.join(tempfile.gettempdir(), "containerd-mount"))
    before = {m for m in mountpoints() if m.startswith(ours)}
    yield
    after = {m for m in mountpoints() if m.startswith(ours)}
    for m in sorted(after - before, reverse=True):  # clean up, then fail
        unmount_all(m)
    assert after == before, f"mounts left behind: {sorted(after - before)}"


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[tuple[Path, Path, Path, Mount]]:
    """lower, upper, merged dirs and the overlay mount of upper over lower (unmounted)."""
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for p in (lower, upper, work, merged):
        p.mkdir()
    m = Mount("overlay", "overlay", [f"workdir={work}", f"upperdir={upper}", f"lowerdir={lower}"])
    yield lower, upper, merged, m
    unmount_all(str(merged))


LAYER1 = tar(
    d("etc/"),
    e("etc/passwd", data=b"root:x:0:0\n"),
    e("etc/hosts", data=b"127.0.0.1 localhost\n"),
    d("usr/", mode=0o750, owner=(1000, 1000)),
    d("usr/share/"),
    e("usr/share/doc", data=b"docs"),
    d("var/cache/"),
    e("var/cache/a", data=b"a"),
    d("var/cache/sub/"),
    e("var/cache/sub/b", data=b"b"),
    e("bin/sh", data=b"ELF", mode=0o755, owner=(0, 0)),
    d("gone/"),
    e("gone/file", data=b"bye"),
)
LAYER2 = tar(
    e("etc/.wh.hosts"),  # delete a file
    e("etc/passwd", data=b"root:x:0:0\nuser:x:1000:1000\n"),  # replace a file
    e(".wh.gone"),  # delete a directory
    e("var/cache/.wh..wh..opq"),  # make a directory opaque ...
    e("var/cache/fresh", data=b"new"),  # ... keeping what this layer puts in it
    e("usr/share/new", data=b"implicit parents"),  # usr/ and usr/share/ are not in this layer
    e(
        "bin/ping",
        data=b"ELF",
        mode=0o755,
        pax={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02" + "\x00" * 16},
    ),
)


def test_two_layers_native_and_overlay_give_the_same_tree(
    tmp_path: Path, overlay: tuple[Path, Path, Path, Mount]
) -> None:
    lower, upper, merged, m = overlay
    native = tmp_path / "native"
    native.mkdir()
    apply(LAYER1, native)
    apply(LAYER2, native)
    assert not (native / "etc" / "hosts").exists() and not (native / "gone").exists()
    assert sorted(os.listdir(native / "var" / "cache")) == ["fresh"]

    apply(LAYER1, lower)
    applied = apply_to_mounts([m], io.BytesIO(gzip.compress(LAYER2)), OCI + "+gzip")
    assert applied.digest == "sha256:" + hashlib.sha256(LAYER2).hexdigest()
    # What overlayfs itself would have written.
    hosts = (upper / "etc" / "hosts").lstat()
    assert stat.S_ISCHR(hosts.st_mode) and hosts.st_rdev == 0
    assert stat.S_ISCHR((upper / "gone").lstat().st_mode)
    assert os.getxattr(upper / "var" / "cache", "trusted.overlay.opaque") == b"y"
    # Implicit parents took their owner and mode from the lower layer, not 0755 root.
    usr = (upper / "usr").stat()
    assert (stat.S_IMODE(usr.st_mode), usr.st_uid, usr.st_gid) == (0o750, 1000, 1000)

    mount_all([m], str(merged))
    assert tree(merged) == tree(native)


def test_owners_devices_and_capabilities(tmp_path: Path) -> None:
    cap = "\x01\x00\x00\x02\x00\x20\x00\x00" + "\x00" * 12  # cap_net_raw, permitted
    apply(
        tar(
            d("home/", owner=(1234, 5678)),
            e("home/f", data=b"x", mode=0o6755, owner=(1234, 5678)),
            e("home/l", tarfile.SYMTYPE, link="f", owner=(4321, 8765)),
            e("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
            e("dev/loop9", tarfile.BLKTYPE, mode=0o660, dev=(7, 9), owner=(0, 6)),
            e("dev/fifo", tarfile.FIFOTYPE, mode=0o600),
            e("ping", data=b"ELF", mode=0o755, pax={"SCHILY.xattr.security.capability": cap}),
            e("admin", data=b"", pax={"SCHILY.xattr.trusted.overlay.opaque": "y"}),
        ),
        tmp_path,
    )
    f = (tmp_path / "home" / "f").stat()
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (1234, 5678, 0o6755)
    link = (tmp_path / "home" / "l").lstat()
    assert (link.st_uid, link.st_gid) == (4321, 8765)
    null = (tmp_path / "dev" / "null").lstat()
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    loop = (tmp_path / "dev" / "loop9").lstat()
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 9) and loop.st_gid == 6
    assert stat.S_ISFIFO((tmp_path / "dev" / "fifo").lstat().st_mode)
    assert os.getxattr(tmp_path / "ping", "security.capability") == cap.encode("latin-1")
    # trusted.* from a layer would let it steer overlayfs: ignored, like containerd.
    assert "trusted.overlay.opaque" not in os.listxattr(tmp_path / "admin")


@pytest.mark.parametrize("codec", ["gzip", "zstd", "plain"])
def test_codecs_give_the_same_uncompressed_digest(tmp_path: Path, codec: str) -> None:
    blob = tar(d("a/"), e("a/big", data=os.urandom(3 << 20)), e("a/small", data=b"s"))
    packed = {"gzip": gzip.compress, "zstd": zstandard.compress, "plain": bytes}[codec](blob)
    media = {"gzip": OCI + "+gzip", "zstd": OCI + "+zstd", "plain": OCI}[codec]
    (tmp_path / "dir").mkdir()
    bind = Mount("bind", str(tmp_path / "dir"), ["rbind", "rw"])
    applied = apply_to_mounts([bind], io.BytesIO(packed), media)
    assert applied == Applied("sha256:" + hashlib.sha256(blob).hexdigest(), len(blob))
    assert (tmp_path / "dir" / "a" / "small").read_bytes() == b"s"


def test_apply_through_a_temporary_mount(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    # Not the bind shortcut: mounted on a temporary directory, applied there, unmounted.
    m = Mount("none", str(tmp_path / "dir"), ["rbind"])
    apply_to_mounts([m], io.BytesIO(tar(e("f", data=b"via mount"))), OCI)
    assert (tmp_path / "dir" / "f").read_bytes() == b"via mount"


# --- hostile layers -------------------------------------------------------------------------


@pytest.fixture
def jail(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A root to apply into, a sentinel directory next to it, and a unique name that must
    never appear in /etc. Checks on the way out that nothing outside the root changed."""
    root, sentinel = tmp_path / "root", tmp_path / "sentinel"
    root.mkdir()
    sentinel.mkdir()
    (sentinel / "victim").write_text("untouched")
    name = f"stacklab-difftest-{uuid.uuid4().hex}"
    etc_before = sorted(os.listdir("/etc"))
    times_before = [os.lstat(p).st_mtime_ns for p in (sentinel, sentinel / "victim", "/etc")]
    yield root, name
    assert [
        os.lstat(p).st_mtime_ns for p in (sentinel, sentinel / "victim", "/etc")
    ] == times_before
    assert sorted(os.listdir("/etc")) == etc_before
    assert not os.path.lexists(f"/etc/{name}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "sentinel"]
    assert [p.name for p in sentinel.iterdir()] == ["victim"]
    assert (sentinel / "victim").read_text() == "untouched"
    assert (sentinel / "victim").stat().st_nlink == 1


def test_escaping_names_land_inside(jail: tuple[Path, str]) -> None:
    root, name = jail
    apply(
        tar(
            e(f"../../../../etc/{name}", data=b"dotdot"),
            e(f"/etc/{name}-abs", data=b"absolute"),
            e("../sentinel/victim", data=b"pwned"),
            e(f"/../../etc/{name}-dev", tarfile.CHRTYPE, dev=(1, 3)),
        ),
        root,
    )
    assert (root / "etc" / name).read_bytes() == b"dotdot"
    assert (root / "etc" / f"{name}-abs").read_bytes() == b"absolute"
    assert (root / "sentinel" / "victim").read_bytes() == b"pwned"
    assert stat.S_ISCHR((root / "etc" / f"{name}-dev").lstat().st_mode)


@pytest.mark.parametrize("target", ["/", "/etc", "../..", "../../..", "../sentinel"])
def test_symlinks_are_followed_inside_only(jail: tuple[Path, str], target: str) -> None:
    root, name = jail
    apply(
        tar(
            e("escape", tarfile.SYMTYPE, link=target),
            e(f"escape/etc/{name}", data=b"through /"),
            e(f"escape/{name}", data=b"through the link"),
            e("escape/victim", data=b"pwned"),
            e("escape/.wh.victim"),
            e(f"escape/{name}-link", tarfile.LNKTYPE, link=f"escape/{name}"),
        ),
        root,
    )
    inside = {p.name for p in root.rglob("*")}
    assert name in inside and f"{name}-link" in inside
    if target.startswith("/"):  # resolved as if the root were /
        assert (root / target.lstrip("/") / name).read_bytes() == b"through the link"


def test_symlink_swapped_in_under_an_earlier_directory(jail: tuple[Path, str]) -> None:
    """The directory times set at the end are resolved again, not through the new symlink."""
    root, name = jail
    sentinel = root.parent / "sentinel"
    layer = tar(
        d("a/"),
        d("a/victim/"),
        e("a", tarfile.SYMTYPE, link=str(sentinel)),  # the host path, absolute
        e(f"a/{name}"),
    )
    apply(layer, root)
    assert (root / sentinel.relative_to("/") / name).exists()


def test_hardlink_to_an_existing_file_outside_is_refused(jail: tuple[Path, str]) -> None:
    root, _ = jail
    victim = root.parent / "sentinel" / "victim"
    for link in (str(victim), "../sentinel/victim", "../../" + str(victim)):
        with pytest.raises(InvalidArgument, match="failed to create hardlink"):
            apply(tar(e("h", tarfile.LNKTYPE, link=link)), root)
    with pytest.raises(InvalidArgument, match="failed to create hardlink"):
        apply(
            tar(
                e("esc", tarfile.SYMTYPE, link=str(victim.parent)),
                e("h", tarfile.LNKTYPE, link="esc/victim"),
            ),
            root,
        )


def test_overlay_apply_of_a_hostile_layer(jail: tuple[Path, str], tmp_path: Path) -> None:
    root, name = jail
    apply(
        tar(
            e("esc", tarfile.SYMTYPE, link="/"),
            e(f"esc/etc/.wh.{name}"),
            e("esc/etc/.wh..wh..opq"),
            e(f"../../etc/.wh.{name}-2"),
        ),
        root,
        overlay_whiteouts=True,
    )
    assert stat.S_ISCHR((root / "etc" / name).lstat().st_mode)
    assert os.getxattr(root / "etc", "trusted.overlay.opaque") == b"y"


# --- diffs of mounted snapshots -------------------------------------------------------------


@pytest.mark.parametrize("media_type", ["", OCI, OCI + "+gzip", OCI + "+zstd"])
def test_diff_mounts_then_apply_gives_the_upper(
    tmp_path: Path, overlay: tuple[Path, Path, Path, Mount], media_type: str
) -> None:
    lower, _, merged, m = overlay
    apply(LAYER1, lower)
    mount_all([m], str(merged))
    # A container at work: change, add, delete, chown, replace a directory.
    (merged / "etc" / "passwd").write_text("changed")
    (merged / "etc" / "new").write_text("new")
    os.chown(merged / "usr" / "share" / "doc", 42, 43)
    (merged / "etc" / "hosts").unlink()
    subprocess.run(["rm", "-rf", str(merged / "var" / "cache")], check=True)
    (merged / "var" / "cache").write_text("a file now")
    os.mknod(merged / "etc" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.link(merged / "etc" / "new", merged / "new-link")
    unmount_all(str(merged))

    out = io.BytesIO()
    lower_mount = Mount("bind", str(lower), ["rbind", "ro"])
    written = diff_mounts([lower_mount], [m], out, media_type)
    blob = out.getvalue()
    expected = {"": "gzip", OCI + "+gzip": "gzip", OCI + "+zstd": "zstd", OCI: "plain"}[media_type]
    assert blob[:4] == {"gzip": b"\x1f\x8b\x08\x00", "zstd": b"\x28\xb5\x2f\xfd"}.get(
        expected, blob[:4]
    )

    target = tmp_path / "target"
    target.mkdir()
    apply(LAYER1, target)
    assert apply(blob, target) == written  # the uncompressed digest, as the diff reported
    mount_all([m], str(merged))
    assert tree(target) == tree(merged)
    assert (target / "new-link").stat().st_ino == (target / "etc" / "new").stat().st_ino


def test_diff_refuses_unknown_media_types(tmp_path: Path) -> None:
    with pytest.raises(NotImplemented_, match="unsupported diff media type"):
        diff_mounts([], [], io.BytesIO(), OCI + "+bzip2")


def test_write_diff_keeps_capabilities(tmp_path: Path) -> None:
    for p in ("lower", "upper", "target"):
        (tmp_path / p).mkdir()
    (tmp_path / "upper" / "ping").write_bytes(b"ELF")
    cap = b"\x01\x00\x00\x02\x00\x20\x00\x00" + bytes(12)
    os.setxattr(tmp_path / "upper" / "ping", "security.capability", cap)
    out = io.BytesIO()
    write_diff(str(tmp_path / "lower"), str(tmp_path / "upper"), out)
    apply(out.getvalue(), tmp_path / "target")
    assert os.getxattr(tmp_path / "target" / "ping", "security.capability") == cap


# --- mount(2) -------------------------------------------------------------------------------


def test_read_only_bind_and_stacked_unmount(tmp_path: Path) -> None:
    src, target = tmp_path / "src", tmp_path / "target"
    src.mkdir()
    target.mkdir()
    mount_all([Mount("bind", str(src), ["rbind", "ro", "nosuid", "rprivate"])], str(target))
    mount_all([Mount("tmpfs", "tmpfs", ["size=1m", "mode=700"])], str(target))
    try:
        (target / "on-tmpfs").write_text("x")
        assert not (src / "on-tmpfs").exists()
    finally:
        unmount_all(str(target))  # both: the tmpfs, then the bind below it
    assert str(target) not in mountpoints()
    mount_all([Mount("bind", str(src), ["rbind", "ro"])], str(target))
    try:
        with pytest.raises(OSError, match="Read-only"):
            (target / "f").write_text("x")
    finally:
        unmount_all(str(target))


def test_temp_mount_cleans_up_even_on_errors(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with (
        pytest.raises(RuntimeError),
        temp_mount([Mount("bind", str(tmp_path / "src"), ["rbind"])], str(tmp_path)) as root,
    ):
        assert root in mountpoints()
        raise RuntimeError
    assert sorted(os.listdir(tmp_path)) == ["src"]
    with (
        pytest.raises(ContainerdError, match="failed to mount"),
        temp_mount([Mount("bind", str(tmp_path / "missing"), ["rbind"])], str(tmp_path)),
    ):
        pass
    assert sorted(os.listdir(tmp_path)) == ["src"]


def test_many_long_lowerdirs_fit_in_one_page(tmp_path: Path) -> None:
    """80 lowerdirs of ~120 characters: over 4096 bytes of options until compacted."""
    base = tmp_path / ("x" * 60) / "snapshots"
    lowers = []
    for i in range(80):
        p = base / f"{i}" / "fs"
        p.mkdir(parents=True)
        (p / f"layer{i}").write_text(str(i))
        lowers.append(str(p))
    (tmp_path / "merged").mkdir()
    opts = ["lowerdir=" + ":".join(reversed(lowers))]
    assert sum(map(len, opts)) > 4096
    mount_all([Mount("overlay", "overlay", opts)], str(tmp_path / "merged"))
    try:
        assert len(os.listdir(tmp_path / "merged")) == 80
    finally:
        unmount_all(str(tmp_path / "merged"))
