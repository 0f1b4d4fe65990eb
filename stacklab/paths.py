"""Where every layer keeps its sockets and state, under one root (ARCHITECTURE.md).

Like `/run/containerd` + `/var/lib/containerd` + `/run/runc` on a real host, scaled under one
root so that several stacks and the real daemons can coexist. `STACKLAB_ROOT` moves all of it
(runtime state at the root, persistent state under `lib/`); without it the runtime state is in
`/run/stacklab` and the persistent state in `/var/lib/stacklab`.

Paths are plain strings: runc-py imports this on every container start, and pathlib alone
would cost it more than the rest of its imports.
"""

import os

DEFAULT_RUNTIME_ROOT = "/run/stacklab"
DEFAULT_STATE_ROOT = "/var/lib/stacklab"


def runtime_root() -> str:
    return os.environ.get("STACKLAB_ROOT") or DEFAULT_RUNTIME_ROOT


def state_root() -> str:
    root = os.environ.get("STACKLAB_ROOT")
    return os.path.join(root, "lib") if root else DEFAULT_STATE_ROOT


def trace_file() -> str:
    return os.path.join(runtime_root(), "trace", "spans.jsonl")


def runc_root() -> str:
    """runc-py's default `--root`, like `/run/runc`."""
    return os.path.join(runtime_root(), "runc")


def docker_socket() -> str:
    return os.path.join(runtime_root(), "docker.sock")


def containerd_socket() -> str:
    return os.path.join(runtime_root(), "containerd", "containerd.sock")


def shim_socket_dir() -> str:
    """Shim sockets, like `/run/containerd/s/`."""
    return os.path.join(runtime_root(), "containerd", "s")


def cri_socket() -> str:
    return os.path.join(runtime_root(), "cri.sock")


def containerd_lib() -> str:
    """Content, snapshots and metadata, like `/var/lib/containerd`."""
    return os.path.join(state_root(), "containerd")


def engine_lib() -> str:
    """Container configs and json-file logs, like `/var/lib/docker`."""
    return os.path.join(state_root(), "engine")
