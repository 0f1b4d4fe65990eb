"""The overlay and native snapshotters with real mounts: a chain of layers is mounted with
mount(8) exactly as containerd's mount options say, written to, committed, and viewed merged."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from containerd_py.snapshots import (
    Kind,
    Mount,
    NativeSnapshotter,
    OverlaySnapshotter,
    Snapshotter,
    overlay_supported,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting snapshots needs root"),
]


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        # The 5th field, with mountinfo's octal escapes (\040 for a space) undone.
        return [line.split()[4].encode().decode("unicode_escape") for line in f]


@contextmanager
def mounted(mounts: list[Mount], target: Path) -> Iterator[Path]:
    """Mount like containerd's mount.All: type, source and the options joined by commas."""
    target.mkdir(exist_ok=True)
    assert len(mounts) == 1
    m = mounts[0]
    subprocess.run(
        ["mount", "-t", m.type, "-o", ",".join(m.options), m.source, str(target)], check=True
    )
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def upper(root: Path, n: int) -> str:
    return str(root / "snapshots" / str(n) / "fs")


def overlay_options(*options: str) -> list[str]:
    # Like containerd, index=off whenever the kernel has the index feature (which this
    # snapshotter checks once the overlay module is loaded, as overlay_supported ensures).
    index = ["index=off"] if os.path.exists("/sys/module/overlay/parameters/index") else []
    return [*index, *options]


@pytest.fixture(params=["overlayfs", "native"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Snapshotter, Path]]:
    root = tmp_path / f"io.containerd.snapshotter.v1.{request.param}"
    make: Callable[[str], Snapshotter]
    if request.param == "overlayfs":
        if not overlay_supported(str(tmp_path)):
            pytest.skip("overlayfs does not mount here")
        make = OverlaySnapshotter
    else:
        make = NativeSnapshotter
    sn = make(str(root))
    try:
        yield request.param, sn, root
    finally:
        sn.close()
    assert not [p for p in mount_points() if p.startswith(str(tmp_path))]


def expected(name: str, root: Path, step: str) -> list[Mount]:
    """The mounts containerd 1.6 returns at each step of the test below."""
    snaps = root / "snapshots"
    if name == "native":
        return {
            "base": [Mount("bind", str(snaps / "1"), ["rbind", "rw"])],
            "child": [Mount("bind", str(snaps / "2"), ["rbind", "rw"])],
            "view-child": [Mount("bind", str(snaps / "2"), ["rbind", "ro"])],
            "view-base": [Mount("bind", str(snaps / "1"), ["rbind", "ro"])],
            "view-empty": [Mount("bind", str(snaps / "5"), ["rbind", "ro"])],
        }[step]
    work2 = str(snaps / "2" / "work")
    return {
        "base": [Mount("bind", upper(root, 1), ["rw", "rbind"])],
        "child": [
            Mount(
                "overlay",
                "overlay",
                overlay_options(
                    f"workdir={work2}", f"upperdir={upper(root, 2)}", f"lowerdir={upper(root, 1)}"
                ),
            )
        ],
        "view-child": [
            Mount(
                "overlay", "overlay", overlay_options(f"lowerdir={upper(root, 2)}:{upper(root, 1)}")
            )
        ],
        "view-base": [Mount("bind", upper(root, 1), ["ro", "rbind"])],
        "view-empty": [Mount("bind", upper(root, 5), ["ro", "rbind"])],
    }[step]


def test_layer_chain(case: tuple[str, Snapshotter, Path], tmp_path: Path) -> None:
    name, sn, root = case
    mnt = tmp_path / "mnt"

    mounts = sn.prepare("base-active")
    assert mounts == expected(name, root, "base")
    with mounted(mounts, mnt):
        (mnt / "etc").mkdir()
        (mnt / "etc" / "hostname").write_text("base\n")
        (mnt / "etc" / "remove-me").write_text("x")
        (mnt / "data").mkdir()
        (mnt / "data" / "keep").write_text("kept\n")
    sn.commit("base", "base-active")

    mounts = sn.prepare("child-active", "base")
    assert mounts == expected(name, root, "child")
    assert sn.mounts("child-active") == mounts
    with mounted(mounts, mnt):
        assert (mnt / "etc" / "hostname").read_text() == "base\n"
        (mnt / "etc" / "hostname").write_text("child\n")
        (mnt / "etc" / "remove-me").unlink()
        (mnt / "new").write_text("new\n")
    active = sn.usage("child-active")
    sn.commit("child", "child-active", labels={"layer": "2"})
    assert sn.usage("child") == active
    assert active.inodes >= 3  # at least the root, etc/ and the new file

    mounts = sn.view("view-child", "child")
    assert mounts == expected(name, root, "view-child")
    with mounted(mounts, mnt):
        assert (mnt / "etc" / "hostname").read_text() == "child\n"
        assert not (mnt / "etc" / "remove-me").exists()
        assert (mnt / "data" / "keep").read_text() == "kept\n"
        assert (mnt / "new").read_text() == "new\n"
        with pytest.raises(OSError) as exc:
            (mnt / "new").write_text("no")
        assert exc.value.errno == errno.EROFS

    mounts = sn.view("view-base", "base")
    assert mounts == expected(name, root, "view-base")
    with mounted(mounts, mnt):
        assert (mnt / "etc" / "hostname").read_text() == "base\n"
        assert (mnt / "etc" / "remove-me").exists()
        assert not (mnt / "new").exists()

    assert sn.view("view-empty") == expected(name, root, "view-empty")
    assert sn.stat("view-empty").kind == Kind.VIEW

    for key in ("view-empty", "view-base", "view-child", "child", "base"):
        sn.remove(key)
    sn.cleanup()
    assert list(sn.walk()) == []
    assert os.listdir(root / "snapshots") == []
    assert sorted(os.listdir(root)) == ["metadata.db", "snapshots"]


def test_overlay_supported_leaves_nothing(tmp_path: Path) -> None:
    assert overlay_supported(str(tmp_path / "root"))
    assert os.listdir(tmp_path / "root") == []
    assert not [p for p in mount_points() if p.startswith(str(tmp_path))]
