"""Small file primitives of the content store: atomic replace, directory fsync, hashing a
file's prefix, and the timestamp format of containerd's ingest files (Go's `time.Time.MarshalText`, RFC 3339 with
nanoseconds), so an ingest left by either daemon reads back in the other."""

from __future__ import annotations

import calendar
import hashlib
import os
import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _hashlib import HASH

# Temporary names end with this; the store removes any it finds when it starts.
TMP_SUFFIX = ".tmp"

_RFC3339 = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)"
)


def fsync_dir(path: str) -> None:
    """Make the entries of `path` (a rename, a new file) survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: str, data: bytes) -> None:
    """Write and fsync `path`; the caller makes its appearance atomic."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> None:
    """Replace `path` with `data`: a reader sees the old content or the new, never a part."""
    tmp = path + TMP_SUFFIX
    write_file(tmp, data)
    os.replace(tmp, path)


def format_time(ns: int) -> bytes:
    """Nanoseconds since the epoch as Go marshals a UTC time: trailing zeros trimmed."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return (text + "Z").encode()


def parse_time(raw: bytes) -> int:
    """The inverse of `format_time`, also accepting a zone offset as Go writes local times."""
    m = _RFC3339.fullmatch(raw.strip())
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {raw!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(8)
    if zone != b"Z":
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[:1] == b"+" else -offset
    frac = int((m.group(7) or b"0").ljust(9, b"0"))
    return seconds * 1_000_000_000 + frac


_CHUNK = 1 << 20


def sha256_prefix(path: str, size: int) -> tuple[HASH, int]:
    """The running sha256 of the first `size` bytes of `path` (to resume or cut back a write),
    and how many bytes it found."""
    hasher = hashlib.sha256()
    buf = memoryview(bytearray(_CHUNK))
    done = 0
    with open(path, "rb", buffering=0) as f:
        while done < size:
            n = f.readinto(buf[: min(_CHUNK, size - done)])
            if not n:
                break
            hasher.update(buf[:n])
            done += n
    return hasher, done
