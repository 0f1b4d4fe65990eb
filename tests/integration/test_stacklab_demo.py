"""The README's main job: `stacklab demo` runs a container through the stack and shows it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
]


def test_demo_shows_the_container_its_tree_and_its_trace(tmp_path: Path) -> None:
    stacklab = Path(sys.executable).parent / "stacklab"
    env = dict(os.environ, STACKLAB_ROOT=str(tmp_path))
    env.pop("TRACEPARENT", None)
    out = subprocess.run(
        [stacklab, "demo"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "runc-py" in text and "init demo-" in text  # the blocked init in pstree
    assert "hostname:      runc" in text and "(my pid is 1)" in text
    assert "/proc  proc" in text and "/sys/fs/cgroup/memory  cgroup" in text
    assert "container exited with status 0" in text
    for span in ("stacklab demo", "runc-py create", "runc-py start", "runc-py delete"):
        assert span in text.split("the trace of this run")[1], span
    assert not any((tmp_path / "runc").iterdir())  # the container is gone
