"""Where every layer keeps its sockets and state, under one root (ARCHITECTURE.md).

Like `/run/containerd` + `/var/lib/containerd` + `/run/runc` on a real host, scaled under one
root so that several stacks and the real daemons can coexist. `STACKLAB_ROOT` moves all of it
(runtime state at the root, persistent state under `lib/`); without it the runtime state is in
`/run/stacklab` and the persistent state in `/var/lib/stacklab`.
"""

import os
from pathlib import Path

DEFAULT_RUNTIME_ROOT = Path("/run/stacklab")
DEFAULT_STATE_ROOT = Path("/var/lib/stacklab")


def runtime_root() -> Path:
    root = os.environ.get("STACKLAB_ROOT")
    return Path(root) if root else DEFAULT_RUNTIME_ROOT


def state_root() -> Path:
    root = os.environ.get("STACKLAB_ROOT")
    return Path(root) / "lib" if root else DEFAULT_STATE_ROOT


def trace_file() -> Path:
    return runtime_root() / "trace" / "spans.jsonl"


def runc_root() -> Path:
    """runc-py's default `--root`, like `/run/runc`."""
    return runtime_root() / "runc"


def docker_socket() -> Path:
    return runtime_root() / "docker.sock"


def containerd_socket() -> Path:
    return runtime_root() / "containerd" / "containerd.sock"


def shim_socket_dir() -> Path:
    """Shim sockets, like `/run/containerd/s/`."""
    return runtime_root() / "containerd" / "s"


def cri_socket() -> Path:
    return runtime_root() / "cri.sock"


def containerd_lib() -> Path:
    """Content, snapshots and metadata, like `/var/lib/containerd`."""
    return state_root() / "containerd"


def engine_lib() -> Path:
    """Container configs and json-file logs, like `/var/lib/docker`."""
    return state_root() / "engine"
