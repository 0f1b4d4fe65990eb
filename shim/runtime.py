"""The OCI runtime command line as the shim calls it, like go-runc (github.com/containerd/go-runc,
runc.go) that containerd-shim-runc-v2 uses: `<runtime> --root R --log B/log.json --log-format json
<command> ...`, with a failed command's error taken from its JSON log.
"""

import json
import os
import subprocess
import sys
from collections.abc import Sequence

from shim.reaper import Reaper, wait_child

OPTIONS_FILE = "options.json"  # the runtime options of Create, for the `delete` subcommand


class CommandError(Exception):
    """A runtime command that failed: its exit status and what it said."""

    def __init__(self, command: str, status: int, message: str) -> None:
        self.command = command
        self.status = status
        self.message = message
        super().__init__(f"{command}: exit status {status}: {message}")


class Runtime:
    def __init__(self, binary: str, root: str, log: str, reaper: Reaper | None = None) -> None:
        self.binary = binary
        self.root = root
        self.log = log
        self.reaper = reaper

    def args(self, *command: str) -> list[str]:
        return [self.binary, "--root", self.root, "--log", self.log, "--log-format", "json",
                *command]  # fmt: skip

    def run(
        self,
        *command: str,
        stdio: Sequence[int] | None = None,
        env: dict[str, str] | None = None,
    ) -> bytes:
        """Run one runtime command; its stdout. `stdio` (stdin, stdout, stderr fds) is what the
        container's process inherits on `create`/`exec`; otherwise stdout is captured."""
        argv = self.args(*command)
        full_env = dict(os.environ, **env) if env else None
        if stdio is not None:  # -1: /dev/null
            proc = subprocess.Popen(
                argv,
                stdin=stdio[0] if stdio[0] >= 0 else subprocess.DEVNULL,
                stdout=stdio[1] if stdio[1] >= 0 else subprocess.DEVNULL,
                stderr=stdio[2] if stdio[2] >= 0 else subprocess.DEVNULL,
                env=full_env,
            )
            out, err = b"", b""
        else:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
            )
            out, err = _read_all(proc)
        status = wait_child(proc, self.reaper)
        if status != 0:
            raise CommandError(command[0], status, self.last_error() or err.decode().strip())
        return out

    def last_error(self) -> str:
        """The last error-level message in the runtime's JSON log, like go-runc's getLastRuntimeError."""
        try:
            with open(self.log, "rb") as f:
                lines = f.read().splitlines()
        except OSError:
            return ""
        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                return str(entry.get("msg", ""))
        return ""


def _read_all(proc: "subprocess.Popen[bytes]") -> tuple[bytes, bytes]:
    """Both pipes to their end, without Popen.communicate (which would wait for the process)."""
    import selectors

    assert proc.stdout is not None and proc.stderr is not None
    chunks: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    with selectors.DefaultSelector() as sel:
        for f in (proc.stdout, proc.stderr):
            sel.register(f.fileno(), selectors.EVENT_READ)
        open_fds = 2
        while open_fds:
            for key, _ in sel.select():
                data = os.read(key.fd, 65536)
                if data:
                    chunks[key.fd].append(data)
                else:
                    sel.unregister(key.fd)
                    open_fds -= 1
    out = b"".join(chunks[proc.stdout.fileno()])
    err = b"".join(chunks[proc.stderr.fileno()])
    proc.stdout.close()
    proc.stderr.close()
    return out, err


def default_binary() -> str:
    """runc-py: the one beside this interpreter (the venv's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "runc-py")
    if os.path.exists(beside):
        return beside
    import shutil

    return shutil.which("runc-py") or beside


def default_root() -> str:
    """The runtimes' state root without options, like the runc shim's /run/containerd/runc (per
    namespace below it); under the stack root when STACKLAB_ROOT is set."""
    if os.environ.get("STACKLAB_ROOT"):
        from stacklab import paths

        return paths.runc_root()
    return "/run/containerd/runc"


def write_options(bundle: str, binary: str, root: str) -> None:
    """Which runtime Create chose, like the runc shim's options.json; written atomically (temp
    file, fsync, rename: ARCHITECTURE.md rule 3)."""
    path = os.path.join(bundle, OPTIONS_FILE)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"binary_name": binary, "root": root}, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def read_options(bundle: str) -> dict[str, str]:
    try:
        with open(os.path.join(bundle, OPTIONS_FILE)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
