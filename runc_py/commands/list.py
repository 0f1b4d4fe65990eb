"""runc list: every container under --root, as a table (Go tabwriter's layout) or JSON."""

from __future__ import annotations

import os
import pwd
import sys

from runc_py.cli import Context
from runc_py.container import state
from runc_py.errors import RuntimeErr, UsageError
from runc_py.flags import Flag
from stacklab import jsonfast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "[command options]"
FLAGS = [
    Flag("format", "str", aliases=("f",), default="table"),
    Flag("quiet", "bool", aliases=("q",)),
]


def table(rows: list[list[str]], minwidth: int = 12, padding: int = 3) -> str:
    """text/tabwriter with runc's settings: every cell but the last padded to its column."""
    widths = [
        max(minwidth, max(len(r[i]) for r in rows) + padding) for i in range(len(rows[0]) - 1)
    ]
    out = []
    for r in rows:
        out.append("".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1])
    return "\n".join(out) + "\n"


def owner(uid: int) -> str:
    """runc's list shows who owns the container's state directory: a user name, else #uid."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    if pos:
        raise UsageError("list does not take arguments")
    states = []
    for cid in state.list_ids(ctx.root):
        try:
            st = state.load(ctx.root, cid).runc_state(ctx.root)
            st["owner"] = owner(os.stat(os.path.join(ctx.root, cid)).st_uid)
        except (RuntimeErr, FileNotFoundError):
            continue  # removed while we listed
        states.append(st)
    if opts["quiet"]:
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif opts["format"] == "json":
        # Go's json.Encoder: compact, one line
        sys.stdout.write(jsonfast.dumps(states or None, (",", ":")) + "\n")
    elif opts["format"] == "table":
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        rows += [
            [s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]]
            for s in states
        ]
        sys.stdout.write(table(rows))
    else:
        raise UsageError(f"invalid format option: {opts['format']}")
    return 0
