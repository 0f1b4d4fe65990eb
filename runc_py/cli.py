"""runc-py's entry point: runc's global flags, then one table of commands (like crun's `crun.c`).

Each command lives in `runc_py/commands/<verb>.py` with its flags and a `run` function, and is
imported only when called, so `runc-py start` does not pay for what `create` needs.
"""

from __future__ import annotations

import os
import sys

from runc_py import log
from runc_py.errors import RuntimeErr, UsageError, describe
from runc_py.flags import Flag, parse
from stacklab import paths, tracing

VERSION = "0.1.0"
SPEC_VERSION = "1.0.2-dev"

# verb -> one-line help. The module runc_py.commands.<verb> holds FLAGS, USAGE and run().
COMMANDS: dict[str, str] = {
    "create": "create a container",
    "delete": "delete any resources held by the container often used with detached container",
    "events": "display container events such as OOM notifications, cpu, memory, and IO usage",
    "exec": "execute new process inside the container",
    "features": "show the enabled features",
    "kill": "kill sends the specified signal (default: SIGTERM) to the container's init process",
    "list": "lists containers started by runc with the given root",
    "pause": "pause suspends all processes inside the container",
    "ps": "ps displays the processes running inside a container",
    "resume": "resumes all processes that have been previously paused",
    "run": "create and run a container",
    "spec": "create a new specification file",
    "start": "executes the user defined process in a created container",
    "state": "output the state of a container",
    "update": "update container resource constraints",
}

GLOBAL_FLAGS = [
    Flag("debug", "bool"),
    Flag("log", "str"),
    Flag("log-format", "str", default="text"),
    Flag("root", "str"),
    Flag("criu", "str"),
    Flag("systemd-cgroup", "bool"),
    Flag("rootless", "str"),
    Flag("help", "bool", aliases=("h",)),
    Flag("version", "bool", aliases=("v",)),
]


class Context:
    """What every command gets from the global flags."""

    def __init__(self, root: str) -> None:
        self.root = root  # absolute: create chdirs into the bundle


def _usage() -> str:
    lines = ["usage: runc-py [global options] command [command options] [arguments...]", ""]
    lines += [f"   {name:<10}{text}" for name, text in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        gopts, rest = parse(GLOBAL_FLAGS, args)
        log.setup(gopts["log"], gopts["log-format"], gopts["debug"])
    except (UsageError, ValueError) as e:
        sys.stderr.write(f"runc-py: {e}\n")
        return 1
    if gopts["version"]:
        sys.stdout.write(f"runc-py version {VERSION}\nspec: {SPEC_VERSION}\n")
        return 0
    if gopts["help"] or not rest or rest[0] == "help":
        sys.stdout.write(_usage())
        return 0
    verb, cmd_args = rest[0], rest[1:]
    if verb not in COMMANDS:
        log.error(f"No help topic for '{verb}'")
        return 3
    if gopts["systemd-cgroup"]:  # containerd's SystemdCgroup = true: refuse, never misplace
        log.error("the systemd cgroup driver is not supported by runc-py (use cgroupfs)")
        return 1
    if (gopts["rootless"] or "auto").lower() not in ("auto", "false"):
        log.error("rootless containers are not supported by runc-py")
        return 1
    __import__(f"runc_py.commands.{verb}")  # importlib itself costs more than this import
    module = sys.modules[f"runc_py.commands.{verb}"]
    ctx = Context(os.path.abspath(gopts["root"] or paths.runc_root()))
    try:
        opts, pos = parse(module.FLAGS, cmd_args)
        if opts.get("help"):
            sys.stdout.write(f"usage: runc-py {verb} {module.USAGE}\n")
            return 0
        if verb in ("spec", "features", "list"):
            return int(module.run(ctx, opts, pos))
        with tracing.span(
            f"runc-py {verb}", "runc-py", os.environ.get(tracing.TRACEPARENT_ENV)
        ) as span:
            if pos:
                span.attrs["id"] = pos[0]
            return int(module.run(ctx, opts, pos))
    except UsageError as e:
        log.error(f"{verb}: {e}")
        return 1
    except RuntimeErr as e:
        log.error(str(e))
        return e.code
    except OSError as e:
        log.error(f"runc-py {verb} failed: {describe(e)}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug must still reach the caller as runc's kind of error
        log.error(f"runc-py {verb} failed: {type(e).__name__}: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
