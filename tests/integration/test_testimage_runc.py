"""A bundle from the test-image builder runs under the real runc."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stacklab import testimage

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="runc run needs root (namespaces, mounts)"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="the real runc is not installed"),
]


def runc_run(bundle: Path, root: Path, cid: str) -> subprocess.CompletedProcess[str]:
    runc = ["runc", "--root", str(root)]
    try:
        return subprocess.run(
            [*runc, "run", "--bundle", str(bundle), cid],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        subprocess.run([*runc, "delete", "-f", cid], capture_output=True, timeout=30)


def test_real_runc_runs_echo(tmp_path: Path) -> None:
    bundle = testimage.build_bundle(tmp_path / "bundle", args=["echo", "hello"], terminal=False)
    proc = runc_run(bundle, tmp_path / "runc-root", f"testimage-{os.getpid()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello\n"


def test_real_runc_sees_the_image_users(tmp_path: Path) -> None:
    """process.user uid 1 resolves to `daemon` through the image's /etc/passwd and /etc/group."""
    bundle = testimage.build_bundle(tmp_path / "bundle", args=["id"])
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["user"] = {"uid": 1, "gid": 5}
    (bundle / "config.json").write_text(json.dumps(spec))
    proc = runc_run(bundle, tmp_path / "runc-root", f"testimage-user-{os.getpid()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("uid=1(daemon) gid=5(tty)"), proc.stdout
