"""Layer compression: what a media type declares, what a stream really is, and codecs for both.

Like containerd's archive/compression and images.DiffCompression: a layer is decompressed by
what its first bytes say (gzip, zstd or nothing), because registries and old Docker versions
sometimes label a compressed layer as a plain tar. Everything streams in large chunks; no
layer is ever held in memory.
"""

from __future__ import annotations

import enum
import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, Protocol

import zstandard

from containerd_py.diff.zstdframes import FrameTracker
from containerd_py.errdefs import InvalidArgument, NotImplemented_

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK = 1 << 20

MEDIA_TYPE_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_LAYER_GZIP = MEDIA_TYPE_LAYER + "+gzip"
MEDIA_TYPE_LAYER_ZSTD = MEDIA_TYPE_LAYER + "+zstd"
MEDIA_TYPE_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MEDIA_TYPE_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_TYPE_DOCKER_LAYER_GZIP = MEDIA_TYPE_DOCKER_LAYER + ".gzip"
MEDIA_TYPE_DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar"
MEDIA_TYPE_DOCKER_FOREIGN_GZIP = MEDIA_TYPE_DOCKER_FOREIGN + ".gzip"


class Compression(enum.Enum):
    UNCOMPRESSED = "uncompressed"
    GZIP = "gzip"
    ZSTD = "zstd"


def expected_compression(media_type: str) -> Compression | None:
    """The compression a layer media type declares (containerd's images.DiffCompression).

    None means "maybe": Docker's plain-tar types were sometimes compressed anyway, so the stream
    decides. A suffix on a Docker type means some other processor wrapped it (encryption), so
    what reaches us is a plain tar. Raises NotImplemented_ for anything that is not a layer.
    """
    base, *ext = media_type.split("+")
    ext.sort()
    if base in (MEDIA_TYPE_DOCKER_LAYER, MEDIA_TYPE_DOCKER_FOREIGN):
        return Compression.UNCOMPRESSED if ext else None
    if base in (MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_DOCKER_FOREIGN_GZIP):
        return Compression.UNCOMPRESSED if ext else Compression.GZIP
    if base in (MEDIA_TYPE_LAYER, MEDIA_TYPE_LAYER_NONDISTRIBUTABLE):
        if ext and ext[-1] in ("gzip", "zstd"):
            return Compression(ext[-1])
        return Compression.UNCOMPRESSED
    raise NotImplemented_(f"unrecognised mediatype {media_type}")


_GZIP_MAGIC = b"\x1f\x8b\x08"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_SKIPPABLE, _ZSTD_SKIPPABLE_MASK = 0x184D2A50, 0xFFFFFFF0
# bzip2 needs its block (or end-of-stream) magic too: "BZh" alone could begin a tar entry name.
_BZIP2_BLOCK_MAGICS = (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")
_XZ_MAGIC = b"\xfd7zXZ\x00"
HEAD_SIZE = 10


def detect_compression(head: bytes) -> Compression:
    """What the first HEAD_SIZE bytes of a layer say it is; bzip2 and xz are refused like
    containerd refuses them (it can only read gzip, zstd and plain tar)."""
    if head.startswith(_GZIP_MAGIC):
        return Compression.GZIP
    if head.startswith(_ZSTD_MAGIC) or (
        len(head) >= 8
        and int.from_bytes(head[:4], "little") & _ZSTD_SKIPPABLE_MASK == _ZSTD_SKIPPABLE
    ):
        return Compression.ZSTD
    if head[:3] == b"BZh" and head[3:4].isdigit() and head[4:10] in _BZIP2_BLOCK_MAGICS:
        raise InvalidArgument("unsupported compression format bzip2")
    if head.startswith(_XZ_MAGIC):
        raise InvalidArgument("unsupported compression format xz")
    return Compression.UNCOMPRESSED


class _Prefixed(io.RawIOBase):
    """`src` with the bytes already read for detection put back in front of it, all of them
    shown to `tap` on their way."""

    def __init__(self, head: bytes, src: BinaryIO, tap: Callable[[bytes], None]) -> None:
        self._head = head
        self._src = src
        self._tap = tap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._head[: len(view)] if self._head else self._src.read(len(view))
        self._head = self._head[len(data) :]
        view[: len(data)] = data
        self._tap(data)
        return len(data)


class _Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...


class DecompressedStream(io.BufferedIOBase):
    """The uncompressed bytes of a layer stream, whatever its compression turns out to be.

    A damaged stream raises InvalidArgument naming the codec; read errors of `src` itself
    propagate unchanged.
    """

    def __init__(self, src: BinaryIO) -> None:
        head = b""
        while len(head) < HEAD_SIZE and (more := src.read(HEAD_SIZE - len(head))):
            head += more
        self.compression = detect_compression(head)
        self._frames = FrameTracker() if self.compression is Compression.ZSTD else None
        tap = self._frames.feed if self._frames else lambda _: None
        raw = io.BufferedReader(_Prefixed(head, src, tap), CHUNK)
        self._reader: _Reader
        if self.compression is Compression.GZIP:
            self._reader = gzip.GzipFile(fileobj=raw, mode="rb")
        elif self.compression is Compression.ZSTD:
            dctx = zstandard.ZstdDecompressor()
            self._reader = dctx.stream_reader(raw, read_size=CHUNK, read_across_frames=True)
        else:
            self._reader = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        try:
            data = self._reader.read(-1 if size is None else size)
        except (gzip.BadGzipFile, EOFError, zlib.error, zstandard.ZstdError) as e:
            raise InvalidArgument(f"invalid {self.compression.value} stream: {e}") from e
        if not data and size != 0 and self._frames and not self._frames.complete:
            raise InvalidArgument("invalid zstd stream: unexpected EOF")
        return data


class Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _ClosingWriter(Writer, Protocol):
    def close(self) -> object: ...


@contextmanager
def compress_stream(out: BinaryIO, compression: Compression) -> Iterator[Writer]:
    """A writer compressing into `out`; leaving the block ends the stream but leaves `out` open.

    gzip at level 6 and zstd at level 3 are the defaults of the Go codecs containerd uses.
    """
    if compression is Compression.UNCOMPRESSED:
        yield out
        return
    writer: _ClosingWriter
    if compression is Compression.GZIP:
        # No name and mtime 0 in the header: the same tree always gives the same blob.
        writer = gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=out, mtime=0)
    else:
        writer = zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False)
    try:
        yield writer
    finally:
        writer.close()
