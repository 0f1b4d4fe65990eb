"""One ttrpc frame on a stream socket, like containerd/ttrpc channel.go.

A frame is a 10-byte header — data length (4 bytes, big-endian), stream id (4 bytes,
big-endian), message type (1 byte: request 1, response 2, data 3), flags (1 byte) — and then
`length` bytes of data, at most 4 MiB. An oversized frame is read past and reported with
`OversizedFrame`, so the connection stays in step and the peer can be answered on that stream.
"""

import socket
import struct
from typing import NamedTuple, Protocol

HEADER_LENGTH = 10
MESSAGE_LENGTH_MAX = 4 << 20  # messageLengthMax

TYPE_REQUEST = 0x1
TYPE_RESPONSE = 0x2
TYPE_DATA = 0x3

FLAG_REMOTE_CLOSED = 0x1
FLAG_REMOTE_OPEN = 0x2
FLAG_NO_DATA = 0x4

_HEADER = struct.Struct(">IIBB")


class Frame(NamedTuple):
    stream_id: int
    type: int
    flags: int
    data: bytes


class FramingError(Exception):
    """The byte stream is not ttrpc frames any more."""


class ShortRead(FramingError, EOFError):
    """The peer closed the connection in the middle of a frame."""


class OversizedFrame(FramingError):
    """A frame longer than MESSAGE_LENGTH_MAX. When reading, its data has been discarded, so
    the next frame can be read; `stream_id` says whom to answer."""

    def __init__(self, length: int, stream_id: int = 0) -> None:
        self.length = length
        self.stream_id = stream_id
        super().__init__(
            f"message length {length} exceed maximum message size of {MESSAGE_LENGTH_MAX}"
        )


class Reader(Protocol):
    def read(self, n: int, /) -> bytes: ...


def _read_exactly(r: Reader, n: int, what: str) -> bytes:
    data = r.read(n)
    if len(data) != n:
        raise ShortRead(f"ttrpc: short read: {what}: got {len(data)} of {n} bytes")
    return data


def read_frame(r: Reader) -> Frame | None:
    """The next frame from `r` (a buffered reader, e.g. `sock.makefile("rb")`); None when the
    peer closed the connection cleanly, between frames."""
    header = r.read(HEADER_LENGTH)
    if not header:
        return None
    if len(header) != HEADER_LENGTH:
        raise ShortRead(f"ttrpc: short read: header: got {len(header)} of {HEADER_LENGTH} bytes")
    length, stream_id, mtype, flags = _HEADER.unpack(header)
    if length > MESSAGE_LENGTH_MAX:
        left = length
        while left:
            chunk = r.read(min(left, 1 << 16))
            if not chunk:
                raise ShortRead(f"ttrpc: short read: discarding an oversized frame of {length}")
            left -= len(chunk)
        raise OversizedFrame(length, stream_id)
    data = _read_exactly(r, length, "frame data") if length else b""
    return Frame(stream_id, mtype, flags, data)


def encode_frame(stream_id: int, mtype: int, flags: int, data: bytes) -> bytes:
    """Header and data of one frame; OversizedFrame if `data` is over the limit."""
    if len(data) > MESSAGE_LENGTH_MAX:
        raise OversizedFrame(len(data), stream_id)
    return _HEADER.pack(len(data), stream_id, mtype, flags) + data


def write_frame(sock: socket.socket, stream_id: int, mtype: int, flags: int, data: bytes) -> None:
    """Send one whole frame. Callers that share a socket between threads hold a lock around
    it, so frames never interleave."""
    sock.sendall(encode_frame(stream_id, mtype, flags, data))
