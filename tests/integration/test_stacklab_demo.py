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
    trace = text.split("the trace of this run")[1]
    for span in ("stacklab demo", "runc-py create", "runc-py start", "runc-py delete"):
        assert span in trace, span
    # The second half: containerd-py -> shim -> runc-py, siblings in the tree, one trace.
    chain = text.split("through containerd-py")[1].split("the trace of this run")[0]
    assert "containerd-py," in chain and "containerd-shim," in chain
    assert chain.count("hostname:      runc") == 1
    assert "container exited with status 0; task, container and snapshot removed" in chain
    hops = [line.strip("│ ├└─") for line in trace.splitlines()]
    create = next(i for i, h in enumerate(hops) if h.startswith("Tasks.Create"))
    assert hops[create + 1].startswith("Task.Create  [shim")
    assert hops[create + 2].startswith("runc-py create  [runc-py")
    assert not list((tmp_path / "runc").glob("**/state.json"))  # the containers are gone
    assert not list((tmp_path / "containerd").glob("io.containerd.runtime.v2.task/*/*"))
    assert not (tmp_path / "containerd" / "containerd.sock").exists()  # the daemon stopped
