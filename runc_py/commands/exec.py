"""runc exec: run a new process in a running container, from flags or a `--process` JSON
(which is how containerd's shim calls it: `exec --process FILE --detach --pid-file FILE`)."""

from __future__ import annotations

import copy

from runc_py.cli import Context
from runc_py.commands import preserved
from runc_py.container import state
from runc_py.container.exec import execute
from runc_py.errors import RuntimeErr, UsageError
from runc_py.flags import Flag
from stacklab import jsonfast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "[command options] <container-id> <command> [command options]  || -p process.json <container-id>"
FLAGS = [
    Flag("console-socket", "str"),
    Flag("cwd", "str"),
    Flag("env", "multi", aliases=("e",)),
    Flag("tty", "bool", aliases=("t",)),
    Flag("user", "str", aliases=("u",)),
    Flag("additional-gids", "multi", aliases=("g",)),
    Flag("process", "str", aliases=("p",)),
    Flag("detach", "bool", aliases=("d",)),
    Flag("pid-file", "str"),
    Flag("process-label", "str"),
    Flag("apparmor", "str"),
    Flag("no-new-privs", "bool"),
    Flag("cap", "multi", aliases=("c",)),
    Flag("preserve-fds", "int", default=0),
    Flag("cgroup", "multi"),
    Flag("ignore-paused", "bool"),
]


def build_process(st: state.State, opts: dict[str, Any], args: list[str]) -> dict[str, Any]:
    if opts["process"]:
        try:
            with open(opts["process"]) as f:
                proc: dict[str, Any] = jsonfast.loads(f.read())
        except (OSError, ValueError) as e:
            raise RuntimeErr(f"unable to load process file {opts['process']}: {e}") from None
        if not isinstance(proc, dict):
            raise RuntimeErr(f"unable to load process file {opts['process']}: not an object")
        return proc
    if not args:
        raise UsageError("exec: requires a command to run")
    proc = copy.deepcopy(st.process)
    proc["args"] = args
    proc["terminal"] = opts["tty"]
    proc["env"] = list(proc.get("env") or []) + opts["env"]
    if opts["cwd"]:
        proc["cwd"] = opts["cwd"]
    if opts["user"]:
        uid, _, gid = opts["user"].partition(":")
        try:
            proc["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise RuntimeErr(f"parsing {opts['user']} as uid:gid failed") from None
    if opts["additional-gids"]:
        proc.setdefault("user", {})["additionalGids"] = [int(g) for g in opts["additional-gids"]]
    if opts["no-new-privs"]:
        proc["noNewPrivileges"] = True
    caps = proc.setdefault("capabilities", {})
    for c in opts["cap"]:
        for kind in ("bounding", "effective", "permitted"):
            caps.setdefault(kind, [])
            if c not in caps[kind]:
                caps[kind].append(c)
    return proc


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    if not pos:
        raise UsageError("requires at least 1 argument (container id)")
    try:
        st = state.load(ctx.root, pos[0])
        proc = build_process(st, opts, pos[1:])
        return execute(
            ctx.root,
            st,
            proc,
            detach=opts["detach"],
            pid_file=opts["pid-file"],
            console_socket=opts["console-socket"],
            preserve_fds=preserved(opts),
        )
    except (RuntimeErr, OSError) as e:
        # runc exits 255 when the exec itself failed: any other status is the process's own
        raise RuntimeErr(f"exec failed: {e}", 255) from None
