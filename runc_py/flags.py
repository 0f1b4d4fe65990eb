"""Command-line flags the way runc's (urfave/cli v1 over Go's `flag`) are read.

`-flag` and `--flag`, `--flag value` and `--flag=value`, booleans as `--flag` or `--flag=false`,
repeatable flags collected into a list, and parsing stops at the first argument that is not a
flag (so `runc exec ID sh -c 'x'` keeps `-c` for the container). Hand-written because argparse
costs more start-up time than every other import of `runc-py start` together.
"""

from __future__ import annotations

from runc_py.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Flag:
    __slots__ = ("aliases", "default", "kind", "name")

    def __init__(self, name: str, kind: str, aliases: tuple[str, ...] = (), default: Any = None):
        self.name = name
        self.kind = kind  # "bool" | "str" | "int" | "multi"
        self.aliases = aliases
        self.default = default


def parse(flags: list[Flag], args: list[str]) -> tuple[dict[str, Any], list[str]]:
    by_name: dict[str, Flag] = {}
    opts: dict[str, Any] = {}
    for f in flags:
        by_name[f.name] = f
        for a in f.aliases:
            by_name[a] = f
        if f.kind == "multi":
            opts[f.name] = []
        elif f.kind == "bool":
            opts[f.name] = bool(f.default)
        else:
            opts[f.name] = f.default
    by_name.setdefault("help", Flag("help", "bool", ("h",)))
    by_name.setdefault("h", by_name["help"])
    opts.setdefault("help", False)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return opts, args[i + 1 :]
        if not arg.startswith("-") or arg == "-":
            return opts, args[i:]
        name = arg.lstrip("-")
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        found = by_name.get(name)
        if found is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        f = found
        if f.kind == "bool":
            if value is None or value.lower() in ("1", "t", "true"):
                opts[f.name] = True
            elif value.lower() in ("0", "f", "false"):
                opts[f.name] = False
            else:
                raise UsageError(f"invalid boolean value {value!r} for -{name}")
            i += 1
            continue
        if value is None:
            if i + 1 >= len(args):
                raise UsageError(f"flag needs an argument: -{name}")
            value = args[i + 1]
            i += 1
        i += 1
        if f.kind == "int":
            try:
                opts[f.name] = int(value)
            except ValueError:
                raise UsageError(f"invalid value {value!r} for flag -{name}") from None
        elif f.kind == "multi":
            opts[f.name].append(value)
        else:
            opts[f.name] = value
    return opts, []
