"""containerd_py.diff.compression: media types, detection by magic bytes, streaming codecs."""

import bz2
import gzip
import io
import lzma
import os
import tarfile
from collections.abc import Callable

import pytest
import zstandard

from containerd_py.diff.compression import (
    CHUNK,
    Compression,
    DecompressedStream,
    compress_stream,
    detect_compression,
    expected_compression,
)
from containerd_py.errdefs import InvalidArgument, NotImplemented_

OCI = "application/vnd.oci.image.layer.v1.tar"
DOCKER = "application/vnd.docker.image.rootfs.diff.tar"


def a_tar(first_name: str = "hello.txt") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = os.urandom(3000) + b"x" * 100_000
        info = tarfile.TarInfo(first_name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_all(stream: DecompressedStream, size: int = 7777) -> bytes:
    out = bytearray()
    while chunk := stream.read(size):
        assert len(chunk) <= size
        out += chunk
    return bytes(out)


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        (OCI, Compression.UNCOMPRESSED),
        (OCI + "+gzip", Compression.GZIP),
        (OCI + "+zstd", Compression.ZSTD),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Compression.GZIP),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar", Compression.UNCOMPRESSED),
        (OCI + "+gzip+encrypted", Compression.GZIP),  # the suffixes are sorted, last one wins
        (DOCKER, None),  # Docker's plain type was sometimes gzip'd anyway: the bytes decide
        (DOCKER + ".gzip", Compression.GZIP),
        ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", Compression.GZIP),
        ("application/vnd.docker.image.rootfs.foreign.diff.tar", None),
        (DOCKER + ".gzip+encrypted", Compression.UNCOMPRESSED),  # wrapped by a processor
    ],
)
def test_expected_compression(media_type: str, expected: Compression | None) -> None:
    assert expected_compression(media_type) is expected


@pytest.mark.parametrize(
    "media_type", ["application/vnd.docker.container.image.v1+json", "", "text/plain"]
)
def test_expected_compression_refuses_what_is_not_a_layer(media_type: str) -> None:
    with pytest.raises(NotImplemented_, match="unrecognised mediatype"):
        expected_compression(media_type)


def test_detect_by_magic() -> None:
    tar = a_tar()
    assert detect_compression(gzip.compress(tar)[:10]) is Compression.GZIP
    assert detect_compression(zstandard.compress(tar)[:10]) is Compression.ZSTD
    skippable = (0x184D2A5E).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"abcd"
    assert detect_compression(skippable[:10]) is Compression.ZSTD
    assert detect_compression(tar[:10]) is Compression.UNCOMPRESSED
    assert detect_compression(b"") is Compression.UNCOMPRESSED


def test_bzip2_and_xz_are_refused_but_a_name_starting_bzh_is_a_tar() -> None:
    with pytest.raises(InvalidArgument, match="unsupported compression format bzip2"):
        detect_compression(bz2.compress(a_tar())[:10])
    with pytest.raises(InvalidArgument, match="unsupported compression format xz"):
        detect_compression(lzma.compress(a_tar())[:10])
    assert detect_compression(a_tar("BZh9-notes.txt")[:10]) is Compression.UNCOMPRESSED


@pytest.mark.parametrize(
    "encode",
    [
        lambda b: b,
        gzip.compress,
        # Several gzip members, as pigz or concatenated uploads make: read as one stream.
        lambda b: gzip.compress(b[:5000]) + gzip.compress(b[5000:]),
        zstandard.compress,
        lambda b: zstandard.compress(b[:5000]) + zstandard.compress(b[5000:]),
    ],
)
def test_decompress_round_trip(encode: Callable[[bytes], bytes]) -> None:
    tar = a_tar()
    stream = DecompressedStream(io.BytesIO(encode(tar)))
    assert read_all(stream) == tar


def test_skippable_zstd_frame_first() -> None:
    tar = a_tar()
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"xyz"
    stream = DecompressedStream(io.BytesIO(skippable + zstandard.compress(tar)))
    assert stream.compression is Compression.ZSTD
    assert read_all(stream) == tar


class Trickle:
    """A pipe-like source that hands out a few bytes per read."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = -1) -> bytes:
        out, self.data = self.data[: min(3, n)], self.data[min(3, n) :]
        return out


def test_detection_survives_short_reads() -> None:
    tar = a_tar()
    stream = DecompressedStream(Trickle(gzip.compress(tar)))  # type: ignore[arg-type]
    assert stream.compression is Compression.GZIP
    assert read_all(stream, CHUNK) == tar


def test_empty_stream_is_an_empty_uncompressed_stream() -> None:
    stream = DecompressedStream(io.BytesIO(b""))
    assert stream.compression is Compression.UNCOMPRESSED
    assert stream.read(CHUNK) == b""


@pytest.mark.parametrize(
    ("data", "codec"),
    [
        (gzip.compress(a_tar())[:-100], "gzip"),  # cut short
        (gzip.compress(a_tar())[:20] + b"\xff" * 200, "gzip"),  # damaged deflate data
        (gzip.compress(a_tar()) + b"garbage after the member", "gzip"),
        (zstandard.compress(a_tar())[:-50], "zstd"),
        (zstandard.compress(a_tar())[:12] + b"\xff" * 200, "zstd"),
    ],
)
def test_damaged_streams_are_invalid_arguments(data: bytes, codec: str) -> None:
    stream = DecompressedStream(io.BytesIO(data))
    with pytest.raises(InvalidArgument, match=f"invalid {codec} stream"):
        read_all(stream, CHUNK)


def test_reads_are_bounded_even_for_a_bomb() -> None:
    """64 MiB of zeros compress to a few KB; each read still returns at most what was asked."""
    zeros = zstandard.ZstdCompressor().compress(bytes(64 << 20))
    stream = DecompressedStream(io.BytesIO(zeros))
    total = 0
    while chunk := stream.read(CHUNK):
        assert len(chunk) <= CHUNK
        total += len(chunk)
    assert total == 64 << 20


@pytest.mark.parametrize("compression", list(Compression))
def test_compress_stream_round_trip_leaves_out_open(compression: Compression) -> None:
    tar = a_tar()
    out = io.BytesIO()
    with compress_stream(out, compression) as w:
        for i in range(0, len(tar), 10_000):
            w.write(tar[i : i + 10_000])
    assert not out.closed
    blob = out.getvalue()
    assert detect_compression(blob[:10]) is compression
    assert read_all(DecompressedStream(io.BytesIO(blob))) == tar


def test_gzip_output_is_reproducible() -> None:
    """No file name and no time in the header: the same diff gives the same blob digest."""
    tar = a_tar()
    blobs = []
    for _ in range(2):
        out = io.BytesIO()
        with compress_stream(out, Compression.GZIP) as w:
            w.write(tar)
        blobs.append(out.getvalue())
    assert blobs[0] == blobs[1]
    assert blobs[0][3:8] == b"\0\0\0\0\0"  # FLG (no FNAME) and MTIME


def test_a_zstd_stream_cut_anywhere_but_between_frames_is_detected() -> None:
    """python-zstandard ends quietly at a cut; like Go's decoder we call it an unexpected EOF.
    The frames mix raw (incompressible), RLE and compressed blocks, checksums and sizes."""
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"12345"
    frames = [
        zstandard.ZstdCompressor(write_checksum=True).compress(os.urandom(200_000)),
        skippable,
        zstandard.ZstdCompressor(write_content_size=False).compress(b"b" * 300_000),
        zstandard.ZstdCompressor(level=19).compress(b"hello " * 5000 + os.urandom(999)),
    ]
    blob = b"".join(frames)
    ends = {sum(map(len, frames[: i + 1])) for i in range(len(frames))}
    cuts = {*range(4, len(blob), 331), *(e + d for e in ends for d in (-1, 0, 1))}
    for cut in sorted(c for c in cuts if 4 <= c <= len(blob)):
        stream = DecompressedStream(io.BytesIO(blob[:cut]))
        if cut in ends:
            read_all(stream, CHUNK)
        else:
            with pytest.raises(InvalidArgument, match="invalid zstd stream"):
                read_all(stream, CHUNK)
