"""The second half of `stacklab demo`: the same container through the Docker 1.11 chain —
containerd-py, one shim, runc-py — driven with `containerd_py.client` the way `ctr run` drives
containerd, so the process tree shows the daemon and the shim as siblings and the trace shows
every hop."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from stacklab import paths

if TYPE_CHECKING:
    from containerd_py.client import Client

NAMESPACE = "demo"
RUNTIME = "io.containerd.runpy.v2"
SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


def _containerd_py() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "containerd-py")
    return here if os.path.exists(here) else "containerd-py"


def start_daemon() -> "subprocess.Popen[bytes]":
    socket = paths.containerd_socket()
    state = os.path.dirname(socket)
    os.makedirs(state, exist_ok=True)
    log = open(os.path.join(state, "containerd-py.log"), "ab")  # noqa: SIM115 - the daemon's
    proc = subprocess.Popen(
        [_containerd_py(), "--root", paths.containerd_lib(), "--state", state,
         "--address", socket],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )  # fmt: skip
    log.close()
    deadline = time.monotonic() + 30
    while not os.path.exists(socket) or not _answers(socket):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise OSError(f"containerd-py did not start (see {state}/containerd-py.log)")
        time.sleep(0.05)
    return proc


def _answers(socket: str) -> bool:
    from containerd_py.client import Client

    try:
        with Client(socket, NAMESPACE) as client:
            client.server_version()
        return True
    except Exception:
        return False


def stop_daemon(proc: "subprocess.Popen[bytes]") -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(bundle: Path, cid: str, traceparent: str, show_tree: Callable[[int], None]) -> int:
    """Import the image, run `cid` from it with the bundle's spec, wait, remove it; return
    the container's exit status."""
    from google.protobuf import any_pb2

    from containerd_py.api.services.containers.v1 import containers_pb2
    from containerd_py.api.services.tasks.v1 import tasks_pb2
    from containerd_py.client import Client, import_archive
    from containerd_py.client.unpack import chain_ids
    from containerd_py.errdefs import NotFound
    from stacklab import testimage

    archive = Path(paths.state_root()) / "demo" / "busybox-oci.tar"
    if not archive.exists():
        info = testimage.build_image_layout(archive.parent / "layout")
        testimage.write_oci_archive(info.layout, archive)
    out = Path(paths.runtime_root()) / f"{cid}.out"
    with Client(paths.containerd_socket(), NAMESPACE, traceparent=traceparent) as client:
        snapshotter = _snapshotter(client)
        (image,) = import_archive(client, str(archive), unpack_to=snapshotter)
        print(f"  Images.Create {image.name}, layers unpacked into {snapshotter} snapshots")
        manifest = json.loads(client.read_blob(image.target.digest))
        config = json.loads(client.read_blob(manifest["config"]["digest"]))
        top = chain_ids(config["rootfs"]["diff_ids"])[-1]
        mounts = client.prepare(cid, top, snapshotter=snapshotter)
        spec = any_pb2.Any(type_url=SPEC_TYPE, value=(bundle / "config.json").read_bytes())
        container = containers_pb2.Container(
            id=cid, image=image.name, spec=spec, snapshotter=snapshotter, snapshot_key=cid
        )
        container.runtime.name = RUNTIME
        client.containers.Create(containers_pb2.CreateContainerRequest(container=container))
        print(f"  Containers.Create {cid} (runtime {RUNTIME})")
        try:
            created = client.tasks.Create(
                tasks_pb2.CreateTaskRequest(
                    container_id=cid, rootfs=mounts, stdout=str(out), stderr=str(out)
                )
            )
            print(f"  Tasks.Create: the shim started, runc-py created the init (pid {created.pid})")
            client.tasks.Start(tasks_pb2.StartRequest(container_id=cid))
            print("\nthe process tree: containerd-py and the shim are siblings; the container's")
            print("init is the shim's child")
            show_tree(created.pid)
            waited = client.tasks.Wait(tasks_pb2.WaitRequest(container_id=cid), timeout=60)
            print("\nthe container printed:")
            print(out.read_text().rstrip())
            client.tasks.Delete(tasks_pb2.DeleteTaskRequest(container_id=cid))
        finally:
            client.containers.Delete(containers_pb2.DeleteContainerRequest(id=cid))
            with contextlib.suppress(NotFound):  # collected with the container already
                client.remove_snapshot(cid, snapshotter)
            out.unlink(missing_ok=True)
    return int(waited.exit_status)


def _snapshotter(client: "Client") -> str:
    """overlayfs where the daemon has it; native on hosts (or roots) where overlay does not
    mount, e.g. a root that is itself on overlayfs."""
    from containerd_py.api.services.introspection.v1 import introspection_pb2

    request = introspection_pb2.PluginsRequest(filters=["type==io.containerd.snapshotter.v1"])
    loaded = {p.id for p in client.introspection.Plugins(request).plugins}
    return "overlayfs" if "overlayfs" in loaded else "native"
