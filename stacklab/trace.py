"""`stacklab trace`: one trace from `trace/spans.jsonl` as a call tree, hop by hop, with the
layer, process and time of each span (what a workshop puts on the screen)."""

from typing import Any

from stacklab import tracing


def last_trace_id(spans: list[dict[str, Any]]) -> str | None:
    return spans[-1]["trace_id"] if spans else None


def call_tree(spans: list[dict[str, Any]], trace_id: str) -> str:
    mine = [s for s in spans if s["trace_id"] == trace_id]
    ids = {s["span_id"] for s in mine}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in mine:
        parent = s["parent_id"] if s["parent_id"] in ids else None
        children.setdefault(parent, []).append(s)
    for lst in children.values():
        lst.sort(key=lambda s: s["start_ns"])
    t0 = min((s["start_ns"] for s in mine), default=0)
    lines = [f"trace {trace_id}"]

    def walk(parent: str | None, prefix: str) -> None:
        kids = children.get(parent, [])
        for i, s in enumerate(kids):
            last = i == len(kids) - 1
            ms = (s["end_ns"] - s["start_ns"]) / 1e6
            at = (s["start_ns"] - t0) / 1e6
            err = f"  ERROR {s['attrs']['error']}" if s.get("attrs", {}).get("error") else ""
            lines.append(
                f"{prefix}{'└─ ' if last else '├─ '}{s['name']}  [{s['layer']} pid {s['pid']}]"
                f"  +{at:.1f}ms {ms:.1f}ms{err}"
            )
            walk(s["span_id"], prefix + ("   " if last else "│  "))

    walk(None, "")
    return "\n".join(lines)


def show(trace_id: str | None = None) -> str:
    spans = tracing.read_spans()
    tid = trace_id or last_trace_id(spans)
    if tid is None:
        return "no spans recorded yet"
    return call_tree(spans, tid)
