"""Apply a layer tar into a directory: containerd's archive.Apply and diff/apply on Linux.

The layer streams through: its bytes are decompressed, hashed (the digest of the uncompressed
tar is the layer's diff ID) and unpacked in one pass, each file copied in large chunks.

Every entry lands inside the root, whatever the layer says (see `rootpath`): a name's `..` stops
at the root, an absolute name starts from it, and symlinks met on the way are followed as if
the root were `/`; the last component of a name is never followed but replaced. These match
containerd, which rescopes rather than refuses such names. A hardlink's target is resolved the
same way, so it can only ever point at a file inside the root.

Whiteouts (`.wh.NAME`, and `.wh..wh..opq` for an opaque directory) either delete from the root
(native) or, applied straight into an overlayfs upperdir, become what overlayfs itself uses: a
0/0 character device, and the xattr trusted.overlay.opaque=y.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Self

from containerd_py.diff.compression import CHUNK, DecompressedStream, expected_compression
from containerd_py.diff.readahead import DigestReader
from containerd_py.diff.rootpath import clean_parts, root_path
from containerd_py.errdefs import ContainerdError, InvalidArgument
from containerd_py.mount import Mount, temp_mount

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
_PAX_XATTR = "SCHILY.xattr."
# tarfile's stream buffer: every header read copies what is left of it, so bigger is slower.
_TAR_BUFSIZE = 64 << 10
_MAX_NS = (1 << 63) - 1
_PAX_TIME = re.compile(r"(-?)([0-9]{1,19})(?:\.([0-9]*))?")
_DEVICE_TYPES = {
    tarfile.CHRTYPE: stat.S_IFCHR,
    tarfile.BLKTYPE: stat.S_IFBLK,
    tarfile.FIFOTYPE: stat.S_IFIFO,
}


@dataclass(frozen=True)
class Applied:
    """The uncompressed tar that went in: its digest (the diff ID) and size in bytes."""

    digest: str
    size: int


def apply_to_mounts(mounts: Sequence[Mount], stream: BinaryIO, media_type: str) -> Applied:
    """Apply the layer in `stream` onto the filesystem `mounts` describe (diff/apply_linux.go).

    A single overlay mount is applied straight into its upperdir with overlay whiteouts, its
    lowerdirs giving the attributes of directories created implicitly; a single writable bind
    into its source; anything else through a temporary mount.
    """
    expected_compression(media_type)  # refuses what is not a layer; the bytes pick the codec
    if len(mounts) == 1:
        m = mounts[0]
        if m.type == "overlay" and not running_in_userns():  # no mknod of whiteouts in a userns
            upper = next((o[9:] for o in m.options if o.startswith("upperdir=")), "")
            lower = next((o[9:] for o in m.options if o.startswith("lowerdir=")), "")
            if upper:
                parents = lower.split(":") if lower else []
                return apply_layer(stream, upper, overlay_whiteouts=True, parents=parents)
        if m.type == "bind" and "ro" not in m.options:
            return apply_layer(stream, m.source)
    with temp_mount(mounts) as root:
        return apply_layer(stream, root)


def apply_layer(
    stream: BinaryIO, root: str, *, overlay_whiteouts: bool = False, parents: Sequence[str] = ()
) -> Applied:
    """Unpack the (gzip, zstd or plain) layer tar in `stream` into the directory `root`.

    `parents` are the directories below `root` in an overlay, nearest first: a directory the
    layer creates only implicitly (as the parent of an entry) takes its owner, mode, times and
    xattrs from the first of them that has it. Raises InvalidArgument for a damaged or invalid
    layer, ContainerdError (UNKNOWN, like containerd) when the filesystem refuses something.
    """
    try:
        with DigestReader(DecompressedStream(stream), _TAR_BUFSIZE) as reader:
            try:
                with _LayerTarFile.open(fileobj=reader, mode="r|", bufsize=_TAR_BUFSIZE) as tf:
                    _Unpacker(root, overlay_whiteouts, parents).run(tf)
            except tarfile.ReadError:
                if reader.size:
                    raise
                # Zero bytes are an empty layer, as Docker has it.
            reader.drain()  # the digest covers the whole stream, padding after the tar too
            return Applied(reader.digest(), reader.size)
    except ContainerdError:
        raise
    except tarfile.TarError as e:
        raise InvalidArgument(f"invalid layer tar: {e}") from e
    except (ValueError, OverflowError) as e:  # a NUL in a name, an id beyond 32 bits
        raise InvalidArgument(f"invalid layer tar: {e}") from e
    except OSError as e:
        raise ContainerdError(f"failed to apply layer: {e}") from e


@functools.cache
def running_in_userns() -> bool:
    """True inside a user namespace, where device nodes cannot be created."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


class _DamagedArchive(tarfile.TarError):
    pass


@contextlib.contextmanager
def _strict(buf: bytes | bytearray) -> Iterator[None]:
    try:
        yield
    except tarfile.HeaderError as e:
        if not buf or buf == bytes(tarfile.BLOCKSIZE):
            raise  # a clean end: no more bytes, or the zero block that ends a tar
        raise _DamagedArchive(f"damaged tar header: {e}") from None


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile takes a bad checksum or a cut header after the first entry for the end of the
    archive, which would apply a truncated layer without a word; Go's archive/tar, and so
    containerd, report it."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        with _strict(buf):
            return super().frombuf(buf, encoding, errors)

    # Python's 2025 tarfile security fixes (3.12.10+, and Debian's 3.11.2-6+deb12u8+) parse
    # headers here, bypassing frombuf.
    @classmethod
    def _frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str, **kw: Any) -> Self:
        with _strict(buf):
            return super()._frombuf(buf, encoding, errors, **kw)  # type: ignore[misc, no-any-return]


class _LayerTarFile(tarfile.TarFile):
    tarinfo = _StrictTarInfo
    members: list[tarfile.TarInfo]  # tarfile's own list, which typeshed leaves out

    def next(self) -> tarfile.TarInfo | None:
        member = super().next()
        self.members.clear()  # a stream never looks back: don't hold every header of a layer
        return member


def _pax_time(hdr: tarfile.TarInfo, key: str) -> int | None:
    value = hdr.pax_headers.get(key)
    if value is None:
        return None
    m = _PAX_TIME.fullmatch(value)
    if m is None:
        raise InvalidArgument(f"invalid PAX {key} {value!r} for {hdr.name}")
    sign, secs, frac = m.groups()
    ns = int(secs) * 1_000_000_000 + int((frac or "")[:9].ljust(9, "0"))
    return -ns if sign else ns


def _times(hdr: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) in ns: atime no earlier than mtime, and both zero when out of range,
    as containerd's latestTime and boundTime have it."""
    mtime = _pax_time(hdr, "mtime")
    if mtime is None:
        mtime = int(hdr.mtime) * 1_000_000_000
    atime = max(_pax_time(hdr, "atime") or mtime, mtime)
    return _bound(atime), _bound(mtime)


def _bound(ns: int) -> int:
    return ns if 0 <= ns <= _MAX_NS else 0


def _remove_all(path: str) -> None:
    """os.RemoveAll: a directory with everything in it, anything else by itself, never
    following a symlink; nothing there is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_xattrs(src: str, dst: str) -> None:
    """Copy `src`'s xattrs onto the new directory `dst`, except trusted.* (overlayfs's own)."""
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.ENODATA):
            return
        raise
    for name in names:
        if name.startswith("trusted."):
            continue
        try:
            value = os.getxattr(src, name, follow_symlinks=False)
            os.setxattr(dst, name, value, os.XATTR_CREATE, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENOTSUP, errno.ENODATA, errno.EEXIST):
                raise


class _Unpacker:
    def __init__(self, root: str, overlay: bool, parents: Sequence[str]) -> None:
        self.root = os.path.abspath(root)
        self.overlay = overlay
        self.parents = parents
        # What this layer wrote, which an opaque marker later in the same layer must keep.
        self.unpacked: set[str] = set()
        # Directory times are set last: creating their children would change them again.
        self.dir_times: list[tuple[list[str], tuple[int, int]]] = []
        # Resolved parent directories by name, so a layer's 10,000 files in one directory
        # resolve it once. Only removing something can change a resolution that ended in an
        # existing directory (new entries only take names that did not exist), so any removal
        # forgets them all.
        self.resolved: dict[tuple[str, ...], str] = {}
        self.skip_devices = running_in_userns()

    def run(self, tf: tarfile.TarFile) -> None:
        while (hdr := tf.next()) is not None:
            self.entry(tf, hdr)
        for parts, times in self.dir_times:
            # Resolved again: a later entry may have replaced a parent with a symlink.
            path = root_path(self.root, parts)
            try:
                os.utime(path, ns=times, follow_symlinks=False)
            except FileNotFoundError:
                pass  # removed again by a later whiteout

    def entry(self, tf: tarfile.TarFile, hdr: tarfile.TarInfo) -> None:
        if (hdr.ischr() or hdr.isblk()) and self.skip_devices:
            log.warning("file %r ignored: archive may not be supported on system", hdr.name)
            return
        parts = clean_parts(hdr.name)
        if not parts:
            return  # the root itself: containerd leaves the root's own attributes alone
        parent = self.parent_dir(parts[:-1])
        base = parts[-1]
        path = os.path.join(parent, base)
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(hdr, parent, base)
            return
        try:
            st: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            st = None
        # What is there is replaced, except that a directory over a directory merges.
        if st is not None and not (stat.S_ISDIR(st.st_mode) and hdr.isdir()):
            self.remove(path)
        self.create(tf, hdr, path, st)
        if hdr.isdir():
            self.dir_times.append((parts, _times(hdr)))
        self.unpacked.add(path)

    def parent_dir(self, parts: list[str]) -> str:
        """The directory that entries named `parts/...` go in, created if missing."""
        key = tuple(parts)
        parent = self.resolved.get(key)
        if parent is None:
            parent = root_path(self.root, parts)
            if parent != self.root:
                self.mkparent(parent)
            self.resolved[key] = parent
        return parent

    def remove(self, path: str) -> None:
        self.resolved.clear()
        _remove_all(path)

    def whiteout(self, hdr: tarfile.TarInfo, parent: str, base: str) -> None:
        if base == WHITEOUT_OPAQUE:
            if self.overlay:
                os.setxattr(parent, "trusted.overlay.opaque", b"y", follow_symlinks=False)
            else:
                self.prune(parent)
            return
        original = base[len(WHITEOUT_PREFIX) :]
        if original in ("", ".", ".."):
            raise InvalidArgument(f"invalid whiteout name: {base}: invalid archive")
        target = os.path.join(parent, original)
        if self.overlay:
            os.mknod(target, stat.S_IFCHR, os.makedev(0, 0))
            os.chown(target, hdr.uid, hdr.gid, follow_symlinks=False)
        else:
            self.remove(target)

    def prune(self, directory: str) -> None:
        """Empty `directory` for an opaque marker, keeping what this layer put there."""
        with os.scandir(directory) as it:
            entries = list(it)
        for e in entries:
            path = os.path.join(directory, e.name)
            if path not in self.unpacked:
                self.remove(path)
            elif e.is_dir(follow_symlinks=False):
                self.prune(path)

    def mkparent(self, path: str) -> None:
        """Create `path` and any missing ancestors below the root (mode 0755, or what the
        overlay parents say)."""
        missing: list[str] = []
        while path != self.root:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                missing.append(path)
                path = os.path.dirname(path)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "mkparent: not a directory", path)
            break
        for p in reversed(missing):
            os.mkdir(p, 0o755)
            os.chmod(p, 0o755)  # not the umask's choice
            self.inherit(p)

    def inherit(self, path: str) -> None:
        rel = os.path.relpath(path, self.root).split("/")
        for parent in self.parents:
            src = root_path(parent, rel)
            try:
                st = os.lstat(src)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):  # else replaced below: keep the defaults
                os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
                os.chmod(path, stat.S_IMODE(st.st_mode))
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                _copy_xattrs(src, path)
            return

    def create(
        self, tf: tarfile.TarFile, hdr: tarfile.TarInfo, path: str, st: os.stat_result | None
    ) -> None:
        mode = hdr.mode & 0o7777
        if hdr.isreg():
            self.write_file(tf, hdr, path, mode)
            return
        if hdr.isdir():
            if st is None or not stat.S_ISDIR(st.st_mode):
                os.mkdir(path, mode)
        elif hdr.issym():
            os.symlink(hdr.linkname, path)
        elif hdr.islnk():
            self.hardlink(hdr, path)
        elif hdr.type in _DEVICE_TYPES:
            dev = os.makedev(hdr.devmajor, hdr.devminor)
            os.mknod(path, mode | _DEVICE_TYPES[hdr.type], dev)
        else:
            raise InvalidArgument(f"unhandled tar header type {hdr.type!r} for {hdr.name}")
        os.chown(path, hdr.uid, hdr.gid, follow_symlinks=False)
        self.set_xattrs(path, hdr, follow=False)
        # After chown, which clears setuid bits; and never on a symlink (a hardlink may be one).
        if not (hdr.issym() or (hdr.islnk() and stat.S_ISLNK(os.lstat(path).st_mode))):
            os.chmod(path, mode)
        if not hdr.isdir():
            os.utime(path, ns=_times(hdr), follow_symlinks=False)

    def write_file(self, tf: tarfile.TarFile, hdr: tarfile.TarInfo, path: str, mode: int) -> None:
        src = tf.extractfile(hdr)
        assert src is not None  # always a file object for a regular file
        # The path was just cleared; O_EXCL|O_NOFOLLOW make sure nothing else took its place.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            remaining = hdr.size
            while remaining > 0:
                chunk = src.read(min(remaining, CHUNK))
                if not chunk:
                    raise InvalidArgument(f"unexpected end of layer in {hdr.name}")
                _write_all(fd, chunk)
                remaining -= len(chunk)
            os.fchown(fd, hdr.uid, hdr.gid)
            self.set_xattrs(fd, hdr, follow=True)
            os.fchmod(fd, mode)
            os.utime(fd, ns=_times(hdr))
        finally:
            os.close(fd)

    def hardlink(self, hdr: tarfile.TarInfo, path: str) -> None:
        # Resolved inside the root like any name, so it can never reach a file outside; the
        # last component is not followed, so a link to a symlink is another symlink.
        parts = clean_parts(hdr.linkname)
        target = os.path.join(root_path(self.root, parts[:-1]), parts[-1]) if parts else self.root
        try:
            os.link(target, path, follow_symlinks=False)
        except OSError as e:
            raise InvalidArgument(
                f"failed to create hardlink {hdr.name} -> {hdr.linkname}: {e.strerror}"
            ) from e

    def set_xattrs(self, target: str | int, hdr: tarfile.TarInfo, *, follow: bool) -> None:
        for key, value in hdr.pax_headers.items():
            if not key.startswith(_PAX_XATTR):
                continue
            name = key[len(_PAX_XATTR) :]
            if name.startswith("trusted."):
                # Admin attributes such as trusted.overlay.* would let a layer steer overlayfs.
                log.warning("ignored xattr %s in archive: admin attributes not supported", name)
                continue
            try:
                raw = value.encode("utf-8", "surrogateescape")  # tarfile's decoding, undone
                os.setxattr(target, name, raw, follow_symlinks=follow)
            except OSError as e:
                # user.* exists only on files and directories; some filesystems have no xattrs.
                special = not (hdr.isreg() or hdr.isdir())
                user_refused = e.errno == errno.EPERM and name.startswith("user.") and special
                if e.errno != errno.ENOTSUP and not user_refused:
                    raise
                log.warning("ignored xattr %s in archive: %s", name, e.strerror)
