"""Compute a layer from two trees: containerd's walking differ (Diff.Diff, `ctr snapshots diff`).

The tar holds what was added or modified in `upper`, with every parent directory of those
entries, and a `.wh.NAME` whiteout for each deletion: an OCI layer that, applied onto `lower`,
gives `upper`. Like containerd's archive.ChangeWriter, it records owners by number only,
times to the second, and of all xattrs only security.capability.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import stat
import tarfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO

from containerd_py.diff.apply import WHITEOUT_PREFIX, Applied
from containerd_py.diff.changes import Change, ChangeKind, capability, changes
from containerd_py.diff.compression import (
    CHUNK,
    MEDIA_TYPE_LAYER,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_ZSTD,
    Compression,
    Writer,
    compress_stream,
)
from containerd_py.errdefs import ContainerdError, NotImplemented_
from containerd_py.mount import Mount, readonly, temp_mount

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

# containerd 1.6 writes plain and gzip diffs; zstd is our addition, for symmetry with apply.
_DIFF_COMPRESSION = {
    MEDIA_TYPE_LAYER: Compression.UNCOMPRESSED,
    MEDIA_TYPE_LAYER_GZIP: Compression.GZIP,
    MEDIA_TYPE_LAYER_ZSTD: Compression.ZSTD,
}
_TYPES = {
    stat.S_IFREG: tarfile.REGTYPE,
    stat.S_IFDIR: tarfile.DIRTYPE,
    stat.S_IFLNK: tarfile.SYMTYPE,
    stat.S_IFCHR: tarfile.CHRTYPE,
    stat.S_IFBLK: tarfile.BLKTYPE,
    stat.S_IFIFO: tarfile.FIFOTYPE,
}


def diff_mounts(
    lower: Sequence[Mount], upper: Sequence[Mount], out: BinaryIO, media_type: str
) -> Applied:
    """Write to `out` the layer that turns `lower` into `upper`, compressed as `media_type`
    says (gzip when empty). Both are mounted read-only for the walk. Returns the digest and
    size of the uncompressed tar: the diff ID, containerd's containerd.io/uncompressed label.
    """
    compression = _DIFF_COMPRESSION.get(media_type or MEDIA_TYPE_LAYER_GZIP)
    if compression is None:
        raise NotImplemented_(f"unsupported diff media type: {media_type}")
    with (
        temp_mount(readonly(lower)) as lower_root,
        temp_mount(readonly(upper)) as upper_root,
        compress_stream(out, compression) as compressed,
    ):
        return write_diff(lower_root, upper_root, compressed)


def write_diff(lower_root: str, upper_root: str, out: Writer) -> Applied:
    """Write to `out` the uncompressed tar of the changes from `lower_root` to `upper_root`."""
    sink = _TarSink(out)
    try:
        with tarfile.TarFile(
            fileobj=sink, mode="w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK
        ) as tar:
            writer = _ChangeWriter(tar, upper_root)
            for change in changes(lower_root, upper_root):
                writer.handle(change)
    except OSError as e:
        raise ContainerdError(f"failed to create diff tar stream: {e}") from e
    return Applied("sha256:" + sink.sha.hexdigest(), sink.size)


class _TarSink(io.BufferedIOBase):
    """Where tarfile writes: on to `out`, hashed and counted (tarfile asks tell() once)."""

    def __init__(self, out: Writer) -> None:
        self._out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, buffer: ReadableBuffer, /) -> int:
        data = bytes(buffer)
        self._out.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


class _ChangeWriter:
    """Changes in, tar entries out (archive.ChangeWriter)."""

    def __init__(self, tar: tarfile.TarFile, source: str) -> None:
        self.tar = tar
        self.source = source
        self.whiteout_time = int(time.time())
        # Hardlinks: the name each inode was first written under, and the unmodified names
        # seen before it was, which must become links once it is.
        self.inode_src: dict[tuple[int, int], str] = {}
        self.inode_refs: dict[tuple[int, int], list[str]] = {}
        self.added_dirs: set[str] = set()

    def handle(self, change: Change) -> None:
        name = change.path.lstrip("/")
        if change.st is None:
            parent, base = posixpath.split(name)
            info = tarfile.TarInfo(posixpath.join(parent, WHITEOUT_PREFIX + base))
            info.mode = 0
            info.mtime = self.whiteout_time
            self.include_parents(info.name, is_dir=False)
            self.tar.addfile(info)
            return
        st = change.st
        kind = _TYPES.get(stat.S_IFMT(st.st_mode))
        if kind is None:
            return  # a socket: not something a layer carries
        full = os.path.join(self.source, name)
        info = _header(name, st, kind, full)
        links: list[str] = []
        if kind != tarfile.DIRTYPE and st.st_nlink > 1:
            inode = (st.st_dev, st.st_ino)
            if inode in self.inode_src:
                info.type, info.linkname, info.size = tarfile.LNKTYPE, self.inode_src[inode], 0
            elif change.kind is ChangeKind.UNMODIFIED:
                self.inode_refs.setdefault(inode, []).append(name)
                return
            else:
                self.inode_src[inode] = name
                links = self.inode_refs.pop(inode, [])
        elif change.kind is ChangeKind.UNMODIFIED:
            return
        cap = capability(full)
        if cap:
            info.pax_headers = {
                "SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape")
            }
        self.include_parents(name, is_dir=kind == tarfile.DIRTYPE)
        if info.isreg() and info.size:
            with open(full, "rb") as f:
                self.tar.addfile(info, f)
        else:
            self.tar.addfile(info)
        for extra in links:
            link = _header(extra, st, kind, full)
            link.type, link.linkname, link.size = tarfile.LNKTYPE, name, 0
            link.pax_headers = info.pax_headers
            self.include_parents(extra, is_dir=False)
            self.tar.addfile(link)

    def include_parents(self, name: str, *, is_dir: bool) -> None:
        """Write the parent directory of `name` first, if not yet written: applying a layer
        must give it the upper tree's owner, mode and time, not the defaults."""
        parent = posixpath.dirname(name)
        if parent and parent not in self.added_dirs:
            self.added_dirs.add(parent)
            st = os.stat(os.path.join(self.source, parent))
            self.handle(Change(ChangeKind.MODIFY, "/" + parent, st))
        if is_dir:
            self.added_dirs.add(name)


def _header(name: str, st: os.stat_result, kind: bytes, full: str) -> tarfile.TarInfo:
    """tar.FileInfoHeader without user and group name lookups, the time in whole seconds."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = st.st_mtime_ns // 1_000_000_000
    if kind == tarfile.REGTYPE:
        info.size = st.st_size
    elif kind == tarfile.SYMTYPE:
        info.linkname = os.readlink(full)
    elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return info
