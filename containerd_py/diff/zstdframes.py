"""Follow the frame structure of a zstd stream, only to tell whether it ended where a frame did.

python-zstandard's stream reader takes a cut-off stream for a short one and just ends, where
Go's decoder, and so containerd, reports an unexpected EOF. Walking the frame and block headers
(RFC 8878 section 3.1) as the compressed bytes go by costs next to nothing: block contents are
skipped, not decoded. Anything malformed is left to the decoder to report.
"""

from __future__ import annotations

_MAGIC = 0xFD2FB528
_SKIPPABLE, _SKIPPABLE_MASK = 0x184D2A50, 0xFFFFFFF0
_RLE_BLOCK = 1


class FrameTracker:
    def __init__(self) -> None:
        self._header = b""
        self._need = 4  # header bytes to collect before _parse: a frame's magic first
        self._skip = 0  # bytes to pass over before the next header
        self._state = "magic"
        self._checksum = False

    @property
    def complete(self) -> bool:
        """False if the bytes so far stop inside a frame ("lost": not ours to judge)."""
        at_frame_end = self._state == "magic" and not self._header and not self._skip
        return at_frame_end or self._state == "lost"

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._state != "lost":
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
                view = view[n:]
                continue
            take = self._need - len(self._header)
            self._header += view[:take].tobytes()
            view = view[take:]
            if len(self._header) == self._need:
                header, self._header = self._header, b""
                self._parse(header)

    def _parse(self, header: bytes) -> None:
        value = int.from_bytes(header, "little")
        if self._state == "magic":
            if value & _SKIPPABLE_MASK == _SKIPPABLE:
                self._state, self._need = "skippable", 4
            elif value == _MAGIC:
                self._state, self._need = "descriptor", 1
            else:
                self._state = "lost"
        elif self._state == "skippable":
            self._skip = value
            self._state, self._need = "magic", 4
        elif self._state == "descriptor":
            fcs_flag, single_segment = value >> 6, bool(value & 0x20)
            self._checksum = bool(value & 0x04)
            window = 0 if single_segment else 1
            dict_id = (0, 1, 2, 4)[value & 0x03]
            fcs = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
            self._skip = window + dict_id + fcs
            self._state, self._need = "block", 3
        else:  # a block header: last flag, type, size
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            self._skip = 1 if kind == _RLE_BLOCK else size
            if last:
                self._skip += 4 if self._checksum else 0
                self._state, self._need = "magic", 4
