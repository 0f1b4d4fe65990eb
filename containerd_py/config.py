"""containerd-py's configuration: containerd's TOML file (version 2) and its command-line flags.

Only the keys containerd-py acts on are read; the rest of a real containerd config (cri,
runtimes we do not have) is accepted and ignored, so one file can serve both daemons."""

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from stacklab import paths

OVERLAYFS = "overlayfs"
NATIVE = "native"


class ConfigError(Exception):
    pass


@dataclass
class Config:
    root: str = field(default_factory=paths.containerd_lib)
    state: str = field(default_factory=lambda: os.path.join(paths.runtime_root(), "containerd"))
    address: str = field(default_factory=paths.containerd_socket)
    uid: int = 0
    gid: int = 0
    # `[ttrpc] address`, where shims forward events; empty: derived from the gRPC address
    # once the flags are applied, as containerd does (see ttrpc_socket).
    ttrpc_address: str = ""
    max_recv_message_size: int = 16 << 20  # containerd's defaults
    max_send_message_size: int = 16 << 20
    debug_level: str = "info"
    disabled_plugins: list[str] = field(default_factory=list)
    plugins: dict[str, Any] = field(default_factory=dict)

    def plugin(self, name: str) -> dict[str, Any]:
        """The `[plugins."<name>"]` table (version 2 names, e.g.
        `io.containerd.snapshotter.v1.overlayfs`)."""
        table = self.plugins.get(name, {})
        return table if isinstance(table, dict) else {}

    def ttrpc_socket(self) -> str:
        """The ttrpc socket: `[ttrpc] address`, else `<grpc address>.ttrpc`."""
        return self.ttrpc_address or f"{self.address}.ttrpc"

    def enabled(self, plugin_id: str) -> bool:
        return plugin_id not in self.disabled_plugins


def load(path: str | None) -> Config:
    config = Config()
    if not path:
        return config
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"failed to load TOML: {path}: no such file or directory") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"failed to load TOML from {path}: {e}") from None
    version = data.get("version", 1)
    if version not in (1, 2):
        raise ConfigError(f"unsupported config version {version}")
    config.root = str(data.get("root", config.root))
    config.state = str(data.get("state", config.state))
    grpc = data.get("grpc", {})
    config.address = str(grpc.get("address", config.address))
    config.uid = int(grpc.get("uid", 0))
    config.gid = int(grpc.get("gid", 0))
    config.max_recv_message_size = int(
        grpc.get("max_recv_message_size", config.max_recv_message_size)
    )
    config.max_send_message_size = int(
        grpc.get("max_send_message_size", config.max_send_message_size)
    )
    config.ttrpc_address = str(data.get("ttrpc", {}).get("address", ""))
    config.debug_level = str(data.get("debug", {}).get("level", config.debug_level))
    config.disabled_plugins = [str(p) for p in data.get("disabled_plugins", [])]
    config.plugins = dict(data.get("plugins", {}))
    return config
