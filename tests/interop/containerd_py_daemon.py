"""containerd-py of the test's own: temp root, state and socket, its log in the temp dir, and
a teardown that leaves no process, mount or socket. The real `ctr` talks to it (`ctr()`), and
so does our Python client (`client()`)."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from containerd_py.client.client import Client

BINARY = str(Path(sys.executable).parent / "containerd-py")

CONFIG = """\
version = 2
root = "{dir}/root"
state = "{dir}/state"

[grpc]
  address = "{dir}/containerd.sock"

[debug]
  level = "debug"
{extra}
"""


@dataclass
class ContainerdPy:
    dir: Path
    proc: "subprocess.Popen[bytes]"
    namespace: str = "t"

    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def root(self) -> Path:
        return self.dir / "root"

    @property
    def content_root(self) -> Path:
        return self.root / "io.containerd.content.v1.content"

    def blobs(self) -> set[str]:
        top = self.content_root / "blobs" / "sha256"
        return {f"sha256:{p.name}" for p in top.iterdir()} if top.is_dir() else set()

    def snapshot_dirs(self, snapshotter: str = "overlayfs") -> list[str]:
        top = self.root / f"io.containerd.snapshotter.v1.{snapshotter}" / "snapshots"
        return sorted(p.name for p in top.iterdir()) if top.is_dir() else []

    def ctr(
        self, *args: str, namespace: str | None = None, timeout: float = 120
    ) -> "subprocess.CompletedProcess[str]":
        return subprocess.run(
            ["ctr", "-a", str(self.socket), "-n", namespace or self.namespace, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def client(self, namespace: str | None = None) -> Client:
        return Client(str(self.socket), namespace or self.namespace)

    def log_tail(self, lines: int = 40) -> str:
        path = self.dir / "containerd-py.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def start(self, timeout: float = 20) -> None:
        self.proc = _spawn(self.dir)
        _wait_ready(self, timeout)

    def restart(self, timeout: float = 20) -> None:
        """SIGKILL and start again on the same config."""
        self.kill()
        self.start(timeout)


def _spawn(directory: Path) -> "subprocess.Popen[bytes]":
    env = dict(os.environ, STACKLAB_ROOT=str(directory))
    with open(directory / "containerd-py.log", "ab") as log:
        return subprocess.Popen(
            [BINARY, "--config", str(directory / "config.toml")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )


def _wait_ready(cd: ContainerdPy, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cd.proc.poll() is not None:
            raise RuntimeError(f"containerd-py exited {cd.proc.returncode}:\n{cd.log_tail()}")
        if cd.socket.exists() and cd.ctr("version", timeout=10).returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"containerd-py did not come up:\n{cd.log_tail()}")


def _mounts_under(directory: Path) -> list[str]:
    prefix = f"{directory}/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if point.startswith(prefix):
                found.append(point)
    return found


@contextlib.contextmanager
def start_containerd_py(directory: Path, extra_config: str = "") -> Iterator[ContainerdPy]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.toml").write_text(CONFIG.format(dir=directory, extra=extra_config))
    cd = ContainerdPy(directory, _spawn(directory))
    try:
        _wait_ready(cd, 20)
        yield cd
    finally:
        if cd.proc.poll() is None:
            cd.proc.send_signal(signal.SIGTERM)
            try:
                cd.proc.wait(10)
            except subprocess.TimeoutExpired:
                cd.kill()
        for point in reversed(_mounts_under(directory)):
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(directory, ignore_errors=True)
