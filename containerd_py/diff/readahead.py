"""A layer's uncompressed bytes, read, decompressed and hashed ahead on a thread.

zlib, zstd, sha256 and read(2) all release the GIL, so while tarfile parses headers and the
unpacker makes syscalls on one core, the next megabytes are inflated and hashed on the other.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from types import TracebackType

from containerd_py.diff.compression import DecompressedStream

_DEPTH = 64  # chunks in flight: a few MB at most, whatever the layer's size


class DigestReader(io.BufferedIOBase):
    """Reads `src` in `chunk_size` pieces ahead of the consumer; `digest()` and `size` describe
    what was read once it is all read. Use it as a context manager: leaving stops the thread.
    """

    def __init__(self, src: DecompressedStream, chunk_size: int) -> None:
        self.size = 0
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(_DEPTH)
        self._stop = threading.Event()
        self._buf = memoryview(b"")
        self._eof = False
        self._thread = threading.Thread(
            target=self._produce, args=(src, chunk_size), name="layer-readahead", daemon=True
        )
        self._thread.start()

    def _produce(self, src: DecompressedStream, chunk_size: int) -> None:
        try:
            while True:
                chunk = src.read(chunk_size)
                self._sha.update(chunk)
                if not self._put(chunk) or not chunk:
                    return
        except BaseException as e:  # handed over: it is raised again in the reading thread
            self._put(e)

    def _put(self, item: bytes | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        if not self._buf:
            if self._eof:
                return b""
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            if not item:
                self._eof = True
                return b""
            if size is None or size < 0 or size >= len(item):
                self.size += len(item)
                return item  # the usual case, tarfile asking for what we read: no copy
            self._buf = memoryview(item)
        n = len(self._buf) if size is None or size < 0 else size
        data = self._buf[:n].tobytes()
        self._buf = self._buf[n:]
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read():
            pass

    def digest(self) -> str:
        """sha256 of everything read; only meaningful once read() returned b""."""
        return "sha256:" + self._sha.hexdigest()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        super().__exit__(exc_type, exc, tb)
