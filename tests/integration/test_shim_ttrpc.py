"""Our shim on its own, driven over ttrpc the way containerd drives it: `start` prints the
address, then Create/Start/Wait/State/Delete/Shutdown; a `traceparent` in the metadata becomes
the parent of the shim's spans, which are the parents of runc-py's."""

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from shim.api.task.v2 import shim_pb2 as api
from shim.api.types.task import task_pb2 as tasktypes
from shim.ttrpc import Client, Code, TTRPCError
from stacklab import testimage, tracing

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the shim's runtime needs root"),
]

SHIM = str(Path(sys.executable).parent / "containerd-shim-runpy-v2")
TASK = "containerd.task.v2.Task"
TRACE_ID, PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


@pytest.fixture
def root() -> Iterator[Path]:
    """A short STACKLAB_ROOT: the shim's socket must fit in sun_path."""
    path = Path(tempfile.mkdtemp(prefix="sl-shim-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_shim(root: Path, cid: str, ns: str, bundle: Path) -> str:
    """`containerd-shim-runpy-v2 ... start` as containerd runs it; the socket path."""
    env = dict(os.environ, STACKLAB_ROOT=str(root))
    flags = ["-namespace", ns, "-address", str(root / "containerd.sock"), "-id", cid]
    started = subprocess.run(
        [SHIM, *flags, "start"], cwd=bundle, env=env, capture_output=True, text=True, timeout=30
    )
    assert started.returncode == 0, started.stderr
    return started.stdout.strip().removeprefix("unix://")


def cleanup(root: Path, cid: str, ns: str, shim_pid: int) -> None:
    if shim_pid and os.path.exists(f"/proc/{shim_pid}"):
        os.kill(shim_pid, 9)
    subprocess.run(
        [str(Path(sys.executable).parent / "runc-py"), "--root", str(root / "runc" / ns),
         "delete", "--force", cid],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.skipif(
    Path("/sys/fs/cgroup/cgroup.controllers").exists(), reason="Stats: cgroup v1 only"
)
def test_update_and_stats(root: Path) -> None:
    """Update hands the runtime the new resources; Stats shows them (pids.max)."""
    from shim.api import typeurl
    from shim.api.cgroups.v1 import metrics_pb2

    cid, ns = f"shimupdate-{os.getpid()}", "shimtest"
    bundle = testimage.build_bundle(root / "bundle", args=["sleep", "1000"])
    spec = json.loads((bundle / "config.json").read_text())
    spec["linux"]["cgroupsPath"] = f"/{ns}/{cid}"
    (bundle / "config.json").write_text(json.dumps(spec))
    path = start_shim(root, cid, ns, bundle)
    shim_pid = 0
    try:
        with Client.connect(path, timeout=10) as client:

            def call(method: str, req: object) -> bytes:
                return client.call(TASK, method, req.SerializeToString(), 30)  # type: ignore[attr-defined]

            shim_pid = api.ConnectResponse.FromString(
                call("Connect", api.ConnectRequest())
            ).shim_pid
            call("Create", api.CreateTaskRequest(id=cid, bundle=str(bundle)))
            call("Start", api.StartRequest(id=cid))
            resources = any_pb2.Any(
                type_url="types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                value=json.dumps({"pids": {"limit": 42}}).encode(),
            )
            call("Update", api.UpdateTaskRequest(id=cid, resources=resources))
            stats = api.StatsResponse.FromString(call("Stats", api.StatsRequest(id=cid))).stats
            metrics = typeurl.unmarshal_any(stats, metrics_pb2.Metrics)
            assert stats.type_url == "io.containerd.cgroups.v1.Metrics"
            assert (metrics.pids.current, metrics.pids.limit) == (1, 42)
            call("Kill", api.KillRequest(id=cid, signal=9))
            waited = api.WaitResponse.FromString(call("Wait", api.WaitRequest(id=cid)))
            assert waited.exit_status == 137
            call("Delete", api.DeleteRequest(id=cid))
            call("Shutdown", api.ShutdownRequest(id=cid))
    finally:
        cleanup(root, cid, ns, shim_pid)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            for d in (hierarchy / ns / cid, hierarchy / ns):
                with contextlib.suppress(OSError):
                    d.rmdir()


def test_shim_over_ttrpc(root: Path) -> None:
    cid, ns = f"shimtest-{os.getpid()}", "shimtest"
    bundle = testimage.build_bundle(root / "bundle", args=["sh", "-c", "echo out; exit 3"])
    env = dict(os.environ, STACKLAB_ROOT=str(root))
    flags = ["-namespace", ns, "-address", str(root / "containerd.sock"), "-id", cid]
    started = subprocess.run(
        [SHIM, *flags, "start"], cwd=bundle, env=env, capture_output=True, text=True, timeout=30
    )
    assert started.returncode == 0, started.stderr
    address = started.stdout.strip()
    assert address.startswith(f"unix://{root}/containerd/s/"), address
    assert (bundle / "address").read_text() == address
    path = address.removeprefix("unix://")
    assert os.stat(path).st_mode & 0o777 == 0o600
    shim_pid = 0
    try:
        with Client.connect(path, timeout=10) as client:

            def call(method: str, req: object, **md: str) -> bytes:
                return client.call(TASK, method, req.SerializeToString(), 30, md or None)  # type: ignore[attr-defined]

            connected = api.ConnectResponse.FromString(call("Connect", api.ConnectRequest(id=cid)))
            shim_pid = connected.shim_pid
            assert Path(f"/proc/{shim_pid}/comm").read_text().strip() == "containerd-shim"
            out = root / "stdout"
            create = api.CreateTaskRequest(id=cid, bundle=str(bundle), stdout=str(out))
            traceparent = f"00-{TRACE_ID}-{PARENT}-01"
            pid = api.CreateTaskResponse.FromString(
                call("Create", create, traceparent=traceparent)
            ).pid
            assert pid > 0
            state = api.StateResponse.FromString(call("State", api.StateRequest(id=cid)))
            assert (state.pid, state.status) == (pid, tasktypes.CREATED)
            call("Start", api.StartRequest(id=cid), traceparent=traceparent)
            waited = api.WaitResponse.FromString(call("Wait", api.WaitRequest(id=cid)))
            assert waited.exit_status == 3 and waited.exited_at.seconds > 0
            state = api.StateResponse.FromString(call("State", api.StateRequest(id=cid)))
            assert (state.status, state.exit_status) == (tasktypes.STOPPED, 3)
            assert out.read_text() == "out\n"

            # Bad requests get their gRPC code, and the shim carries on.
            with pytest.raises(TTRPCError) as err:
                call("State", api.StateRequest(id=cid, exec_id="no-such-exec"))
            assert err.value.code == Code.NOT_FOUND
            with pytest.raises(TTRPCError) as err:
                client.call(TASK, "NoSuchMethod", b"", 5)
            assert err.value.code == Code.UNIMPLEMENTED
            with pytest.raises(TTRPCError) as err:
                client.call(TASK, "State", b"\xff\xff\xff", 5)
            assert err.value.code == Code.INVALID_ARGUMENT
            # Raw bytes from another client: a frame over 4 MiB, then no frame at all.
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
                raw.connect(path)
                raw.sendall(struct.pack(">IIBB", (4 << 20) + 1, 1, 1, 0) + b"x" * ((4 << 20) + 1))
                raw.sendall(b"garbage that is not a frame at all")
            state = api.StateResponse.FromString(call("State", api.StateRequest(id=cid)))
            assert state.exit_status == 3  # still serving

            deleted = api.DeleteResponse.FromString(call("Delete", api.DeleteRequest(id=cid)))
            assert (deleted.pid, deleted.exit_status) == (pid, 3)
            call("Shutdown", api.ShutdownRequest(id=cid))
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{shim_pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{shim_pid}"), "the shim did not exit on Shutdown"
        assert not os.path.exists(path), "the shim left its socket"
    finally:
        cleanup(root, cid, ns, shim_pid)

    spans = tracing.read_spans(str(root / "trace" / "spans.jsonl"))
    by_name = {s["name"]: s for s in spans if s["trace_id"] == TRACE_ID}
    assert by_name["Task.Create"]["parent_id"] == PARENT
    assert by_name["Task.Create"]["layer"] == "shim"
    assert by_name["runc-py create"]["parent_id"] == by_name["Task.Create"]["span_id"]
    assert by_name["runc-py start"]["parent_id"] == by_name["Task.Start"]["span_id"]
