"""Continue a W3C trace and record spans, one JSON object per line, for `stacklab trace`.

Every layer calls this at each hop (HTTP header, gRPC/ttrpc metadata, `TRACEPARENT` in a
runtime's environment), so one `docker run` becomes one call tree. It is the stand-in for an
OpenTelemetry SDK that the per-container processes cannot afford to import: standard library only,
and one `write(2)` with O_APPEND per span so that concurrent writers never interleave lines.
"""

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacklab import paths

TRACEPARENT_ENV = "TRACEPARENT"


@dataclass(frozen=True)
class SpanContext:
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits

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


@dataclass
class Span:
    name: str
    layer: str
    context: SpanContext
    parent_id: str | None
    start_ns: int
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def traceparent(self) -> str:
        """The header value to hand to the next hop, naming this span as its parent."""
        return self.context.traceparent()

    def record(self, end_ns: int, path: Path | None = None) -> None:
        line = json.dumps(
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
            separators=(",", ":"),
        )
        append_line(path or paths.trace_file(), line)


def append_line(path: Path, line: str) -> None:
    data = (line + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def start_span(
    name: str, layer: str, traceparent: str | None = None, attrs: dict[str, Any] | None = None
) -> Span:
    """A span continuing `traceparent`, or the root of a new trace when there is none."""
    parent = parse_traceparent(traceparent)
    trace_id = parent.trace_id if parent else os.urandom(16).hex()
    return Span(
        name=name,
        layer=layer,
        context=SpanContext(trace_id, os.urandom(8).hex()),
        parent_id=parent.span_id if parent else None,
        start_ns=time.time_ns(),
        attrs=dict(attrs or {}),
    )


@contextmanager
def span(
    name: str,
    layer: str,
    traceparent: str | None = None,
    attrs: dict[str, Any] | None = None,
    path: Path | None = None,
) -> Iterator[Span]:
    """Record a span around the block; an exception is noted in its attrs and re-raised.

    Recording is best effort: a trace log that cannot be written never fails the operation.
    """
    s = start_span(name, layer, traceparent, attrs)
    try:
        yield s
    except BaseException as e:
        s.attrs.setdefault("error", f"{type(e).__name__}: {e}")
        raise
    finally:
        try:
            s.record(time.time_ns(), path)
        except OSError:
            pass


def read_spans(path: Path | None = None) -> list[dict[str, Any]]:
    """Every span in the trace log, in the order they were written (skipping torn lines)."""
    p = path or paths.trace_file()
    out: list[dict[str, Any]] = []
    try:
        text = p.read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
