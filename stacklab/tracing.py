"""Continue a W3C trace and record spans, one JSON object per line, for `stacklab trace`.

Every layer calls this at each hop (HTTP header, gRPC/ttrpc metadata, `TRACEPARENT` in a
runtime's environment), so one `docker run` becomes one call tree. It is the stand-in for an
OpenTelemetry SDK that the per-container processes cannot afford to import: standard library only,
and one `write(2)` with O_APPEND per span so that concurrent writers never interleave lines.
"""

from __future__ import annotations

import os
import time

from stacklab import jsonfast, paths

TYPE_CHECKING = False  # typing costs runc-py start-up time; only the type checker needs it
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any

TRACEPARENT_ENV = "TRACEPARENT"


class SpanContext:
    __slots__ = ("span_id", "trace_id")

    def __init__(self, trace_id: str, span_id: str) -> None:
        self.trace_id = trace_id  # 32 hex digits
        self.span_id = span_id  # 16 hex digits

    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The parent named by a `traceparent` header, or None if it is absent or malformed.

    A malformed header starts a new trace, as the W3C spec asks, rather than failing the request.
    """
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    trace_id, span_id = parts[1].lower(), parts[2].lower()
    if len(trace_id) != 32 or len(span_id) != 16:
        return None
    try:
        int(trace_id, 16), int(span_id, 16)
    except ValueError:
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return SpanContext(trace_id, span_id)


class Span:
    """One operation of one layer. Used as a context manager it records itself on exit
    (an exception is noted in its attrs and re-raised); recording is best effort: a trace log
    that cannot be written never fails the operation."""

    def __init__(
        self,
        name: str,
        layer: str,
        traceparent: str | None = None,
        attrs: dict[str, Any] | None = None,
        path: str | None = None,
    ) -> None:
        parent = parse_traceparent(traceparent)
        self.name, self.layer, self.path = name, layer, path
        self.context = SpanContext(
            parent.trace_id if parent else os.urandom(16).hex(), os.urandom(8).hex()
        )
        self.parent_id = parent.span_id if parent else None
        self.start_ns = time.time_ns()
        self.attrs: dict[str, Any] = dict(attrs or {})

    @property
    def traceparent(self) -> str:
        """The header value to hand to the next hop, naming this span as its parent."""
        return self.context.traceparent()

    def record(self, end_ns: int) -> None:
        line = jsonfast.dumps(
            {
                "trace_id": self.context.trace_id,
                "span_id": self.context.span_id,
                "parent_id": self.parent_id,
                "name": self.name,
                "layer": self.layer,
                "pid": os.getpid(),
                "start_ns": self.start_ns,
                "end_ns": end_ns,
                "attrs": self.attrs,
            },
            (",", ":"),
        )
        append_line(self.path or paths.trace_file(), line)

    def __enter__(self) -> Span:
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.attrs.setdefault("error", f"{typ.__name__ if typ else 'Error'}: {exc}")
        try:
            self.record(time.time_ns())
        except OSError:
            pass


def append_line(path: str, line: str) -> None:
    data = (line + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def span(
    name: str,
    layer: str,
    traceparent: str | None = None,
    attrs: dict[str, Any] | None = None,
    path: str | None = None,
) -> Span:
    """`with span(...) as s:` records a span around the block, continuing `traceparent`, or
    starting a new trace when there is none; pass `s.traceparent` on to the next hop."""
    return Span(name, layer, traceparent, attrs, path)


def read_spans(path: str | None = None) -> list[dict[str, Any]]:
    """Every span in the trace log, in the order they were written (skipping torn lines)."""
    out: list[dict[str, Any]] = []
    try:
        with open(path or paths.trace_file()) as f:
            text = f.read()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            out.append(jsonfast.loads(line))
        except ValueError:
            continue
    return out
