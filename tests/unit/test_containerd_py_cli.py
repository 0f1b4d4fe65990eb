"""containerd-py's command line and configuration file: containerd's flags and TOML keys, and
clear errors (no traceback) for a bad file or flag."""

import subprocess
import sys
from pathlib import Path

from containerd_py import config

BINARY = str(Path(sys.executable).parent / "containerd-py")


def run(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=30)


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0 and "v1.6.20-stacklab" in done.stdout


def test_config_keys_are_containerds(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'version = 2\nroot = "/r"\nstate = "/s"\n'
        'disabled_plugins = ["io.containerd.snapshotter.v1.native"]\n'
        '[grpc]\n  address = "/a.sock"\n  gid = 7\n'
        '[debug]\n  level = "debug"\n'
        '[plugins."io.containerd.snapshotter.v1.overlayfs"]\n  root_path = "/o"\n'
        '[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "ignored"\n'
    )
    cfg = config.load(str(path))
    assert (cfg.root, cfg.state, cfg.address, cfg.gid, cfg.debug_level) == (
        "/r", "/s", "/a.sock", 7, "debug"
    )  # fmt: skip
    assert not cfg.enabled("io.containerd.snapshotter.v1.native")
    assert cfg.plugin("io.containerd.snapshotter.v1.overlayfs") == {"root_path": "/o"}


def test_bad_config_and_flags_fail_clearly(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("version = 2\n[grpc\n")
    done = run("--config", str(broken))
    assert done.returncode == 1 and "failed to load TOML" in done.stderr
    assert "Traceback" not in done.stderr
    missing = run("--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr
    future = tmp_path / "v3.toml"
    future.write_text("version = 9\n")
    assert "unsupported config version 9" in run("--config", str(future)).stderr
    level = run("--log-level", "loud", "--root", str(tmp_path / "r"))
    assert level.returncode == 1 and 'not a valid log level "loud"' in level.stderr
