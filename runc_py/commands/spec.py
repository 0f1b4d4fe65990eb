"""runc spec: write the default config.json into the bundle directory."""

from __future__ import annotations

import json
import os

from runc_py.cli import Context
from runc_py.errors import RuntimeErr
from runc_py.flags import Flag
from runc_py.spec import default_spec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "[command options]"
FLAGS = [Flag("bundle", "str", aliases=("b",), default="."), Flag("rootless", "bool")]


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    path = os.path.join(opts["bundle"], "config.json")
    if os.path.exists(path):
        raise RuntimeErr("File config.json exists. Remove it first")
    spec = default_spec()
    if opts["rootless"]:
        raise RuntimeErr("rootless containers are not supported by runc-py")
    with open(path, "w") as f:
        f.write(json.dumps(spec, indent="\t"))
    return 0
