"""runc ps: the container's processes, as `ps -ef` lines (or other ps options) or JSON pids."""

from __future__ import annotations

import json
import subprocess
import sys

from runc_py import cgroups
from runc_py.cli import Context
from runc_py.container import state
from runc_py.errors import RuntimeErr, UsageError
from runc_py.flags import Flag

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "[command options] <container-id> [ps options]"
FLAGS = [Flag("format", "str", aliases=("f",), default="table")]


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    if not pos:
        raise UsageError("requires at least 1 argument (container id)")
    st = state.load(ctx.root, pos[0])
    if st.status(ctx.root) == "stopped":
        raise RuntimeErr("container not running")
    try:
        pids = sorted(cgroups.from_state(st.cgroup).pids())
    except cgroups.CgroupError as e:
        raise RuntimeErr(str(e)) from None
    if opts["format"] == "json":
        if len(pos) > 1:
            raise RuntimeErr("ps options are not supported with --format json")
        sys.stdout.write(json.dumps(pids, separators=(",", ":")) + "\n")  # as Go encodes it
        return 0
    if opts["format"] != "table":
        raise UsageError(f"invalid format option: {opts['format']}")
    ps_args = pos[1:] or ["-ef"]
    try:
        out = subprocess.run(["ps", *ps_args], capture_output=True, check=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeErr(f"ps: {e}") from None
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise RuntimeErr("couldn't find PID field in ps output")
    col = header.index("PID")
    wanted = set(pids)
    sys.stdout.write(lines[0] + "\n")
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
            sys.stdout.write(line + "\n")
    return 0
