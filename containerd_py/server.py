"""containerd-py's daemon: the stores, the collector, the services, and the gRPC server on the
unix socket, assembled from the configuration the way containerd loads its plugins."""

import logging
import os
import shutil
import sys
import threading
import uuid
from concurrent import futures

import grpc

from containerd_py.api.services.containers.v1 import containers_pb2
from containerd_py.api.services.content.v1 import content_pb2
from containerd_py.api.services.diff.v1 import diff_pb2
from containerd_py.api.services.events.v1 import events_pb2
from containerd_py.api.services.images.v1 import images_pb2
from containerd_py.api.services.introspection.v1 import introspection_pb2
from containerd_py.api.services.leases.v1 import leases_pb2
from containerd_py.api.services.namespaces.v1 import namespace_pb2
from containerd_py.api.services.snapshots.v1 import snapshots_pb2
from containerd_py.api.services.tasks.v1 import tasks_pb2
from containerd_py.api.services.version.v1 import version_pb2
from containerd_py.config import NATIVE, OVERLAYFS, Config
from containerd_py.content.local import LocalStore
from containerd_py.errdefs import NotFound
from containerd_py.exchange import Exchange
from containerd_py.metadata.containers import Containers
from containerd_py.metadata.content import Content
from containerd_py.metadata.db import DB
from containerd_py.metadata.gc import Collector
from containerd_py.metadata.images import Images
from containerd_py.metadata.leases import Leases
from containerd_py.metadata.namespaces import Namespaces
from containerd_py.metadata.snapshots import NamespacedSnapshotter
from containerd_py.rpc import bind
from containerd_py.runtime.manager import TaskManager
from containerd_py.runtime.shim import Launcher
from containerd_py.services.containers import ContainersService
from containerd_py.services.content import ContentService
from containerd_py.services.diff import DiffService
from containerd_py.services.events import EventsService
from containerd_py.services.images import ImagesService
from containerd_py.services.leases import LeasesService
from containerd_py.services.namespaces import NamespacesService
from containerd_py.services.snapshots import SnapshotsService
from containerd_py.services.tasks import TasksService
from containerd_py.services.version import IntrospectionService, VersionService, host_platform
from containerd_py.snapshots import (
    NativeSnapshotter,
    OverlaySnapshotter,
    Snapshotter,
    overlay_supported,
)
from containerd_py.ttrpc_events import serve_events

log = logging.getLogger("containerd-py")

SNAPSHOTTER_TYPE = "io.containerd.snapshotter.v1"
TASK_PLUGIN = "io.containerd.runtime.v2.task"
DEFAULT_RUNTIME = "io.containerd.runpy.v2"  # ours; `default_runtime` in the task plugin's table
# Every Events.Subscribe and every Tasks.Wait holds a worker for as long as it lasts, and a
# workshop may run dozens of containers at once.
WORKERS = 512


def publish_binary() -> str:
    """Our own executable, which shims run as `<binary> publish` (containerd's -publish-binary)."""
    beside = os.path.join(os.path.dirname(sys.executable), "containerd-py")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("containerd-py") or os.path.abspath(sys.argv[0])


def _uuid(root: str) -> str:
    """The daemon's identity (Introspection.Server), kept across restarts as containerd does."""
    path = os.path.join(root, "io.containerd.grpc.v1.introspection", "uuid")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        value = str(uuid.uuid4())
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(value)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        return value


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        for directory in (config.root, config.state):
            os.makedirs(directory, mode=0o711, exist_ok=True)
        self.store = LocalStore(os.path.join(config.root, "io.containerd.content.v1.content"))
        self.db = DB(os.path.join(config.root, "io.containerd.metadata.v1.sqlite", "meta.db"))
        self.backends = self._snapshotters()
        self.collector = Collector(self.db, self.store, self.backends)
        self.exchange = Exchange()
        self.content = Content(self.db, self.store)
        self.snapshotters = {
            name: NamespacedSnapshotter(self.db, name, backend)
            for name, backend in self.backends.items()
        }
        self.containers = Containers(self.db)
        task_plugin = config.plugin(TASK_PLUGIN)
        self.default_runtime = str(task_plugin.get("default_runtime") or DEFAULT_RUNTIME)
        launcher = Launcher(
            config.address,
            config.ttrpc_socket(),
            publish_binary(),
            config.debug_level in ("debug", "trace"),
        )
        self.tasks = TaskManager(config.state, config.root, launcher, self.exchange)
        self._stopped = threading.Event()
        self.server: grpc.Server | None = None

    def _snapshotters(self) -> dict[str, Snapshotter]:
        backends: dict[str, Snapshotter] = {}
        for name, cls in ((OVERLAYFS, OverlaySnapshotter), (NATIVE, NativeSnapshotter)):
            plugin_id = f"{SNAPSHOTTER_TYPE}.{name}"
            if not self.config.enabled(plugin_id):
                continue
            root = self.config.plugin(plugin_id).get("root_path") or os.path.join(
                self.config.root, plugin_id
            )
            os.makedirs(root, mode=0o700, exist_ok=True)
            if name == OVERLAYFS and not overlay_supported(root):
                log.warning("overlayfs is not supported here: skipping its snapshotter")
                continue
            backends[name] = cls(root)
        return backends

    def _plugins(self) -> list[introspection_pb2.Plugin]:
        P = introspection_pb2.Plugin
        plugins = [
            P(type="io.containerd.content.v1", id="content", exports={"root": self.store.root}),
            P(
                type="io.containerd.metadata.v1",
                id="sqlite",
                requires=["io.containerd.content.v1", SNAPSHOTTER_TYPE],
            ),
            P(
                type="io.containerd.differ.v1",
                id="walking",
                platforms=[host_platform()],
                requires=["io.containerd.metadata.v1"],
            ),
            P(type="io.containerd.gc.v1", id="scheduler", requires=["io.containerd.metadata.v1"]),
            P(type="io.containerd.lease.v1", id="manager", requires=["io.containerd.metadata.v1"]),
        ]
        for name, backend in self.backends.items():
            plugins.append(
                P(
                    type=SNAPSHOTTER_TYPE,
                    id=name,
                    platforms=[host_platform()],
                    exports={"root": getattr(backend, "root", "")},
                )
            )
        plugins.append(P(type="io.containerd.runtime.v2", id="task", platforms=[host_platform()]))
        for service in (
            "containers",
            "content",
            "diff",
            "events",
            "images",
            "introspection",
            "leases",
            "namespaces",
            "snapshots",
            "tasks",
            "version",
        ):
            plugins.append(P(type="io.containerd.grpc.v1", id=service))
        return plugins

    def recover(self) -> None:
        """Start-up after any stop, clean or not: drop backend state no record names, then
        reconnect to the shims that outlived us and clean up after the ones that did not."""
        for backend in self.backends.values():
            backend.cleanup()
        self.collector.collect()

        def runtime_of(ns: str, id: str) -> str | None:
            try:
                return self.containers.get(ns, id).runtime.name or self.default_runtime
            except NotFound:
                return None

        self.tasks.recover(runtime_of)

    def serve(self) -> None:
        config = self.config
        self.recover()
        services = [
            (version_pb2, "Version", VersionService()),
            (
                introspection_pb2,
                "Introspection",
                IntrospectionService(self._plugins(), _uuid(config.root)),
            ),
            (namespace_pb2, "Namespaces", NamespacesService(Namespaces(self.db), self.exchange)),
            (content_pb2, "Content", ContentService(self.content, self.exchange, self.collector)),
            (
                images_pb2,
                "Images",
                ImagesService(Images(self.db), self.exchange, self.collector),
            ),
            (leases_pb2, "Leases", LeasesService(Leases(self.db), self.collector)),
            (
                snapshots_pb2,
                "Snapshots",
                SnapshotsService(self.snapshotters, self.exchange, self.collector),
            ),
            (diff_pb2, "Diff", DiffService(self.content, os.path.join(config.state, "tmp"))),
            (events_pb2, "Events", EventsService(self.exchange)),
            (
                containers_pb2,
                "Containers",
                ContainersService(
                    self.containers, self.exchange, self.collector, self.default_runtime
                ),
            ),
            (
                tasks_pb2,
                "Tasks",
                TasksService(self.containers, self.tasks, self.default_runtime),
            ),
        ]
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="grpc"),
            handlers=[
                bind(module.DESCRIPTOR.services_by_name[name], impl)
                for module, name, impl in services
            ],
            options=[
                ("grpc.max_receive_message_length", config.max_recv_message_size),
                ("grpc.max_send_message_length", config.max_send_message_size),
                ("grpc.so_reuseport", 0),
            ],
        )
        address = config.address
        os.makedirs(os.path.dirname(address), mode=0o711, exist_ok=True)
        if os.path.exists(address):
            os.unlink(address)  # a socket left by a killed daemon
        server.add_insecure_port(f"unix:{address}")
        server.start()
        os.chmod(address, 0o660)
        os.chown(address, config.uid, config.gid)
        self.server = server
        # Where the real runc-v2 shim forwards its events (TTRPC_ADDRESS); ours runs
        # `containerd-py publish` instead.
        ttrpc_address = config.ttrpc_socket()
        events_server = serve_events(ttrpc_address, self.exchange)
        os.chown(ttrpc_address, config.uid, config.gid)
        log.info("serving on %s and %s", address, ttrpc_address)
        self._stopped.wait()
        events_server.shutdown(timeout=2)
        server.stop(grace=2).wait()
        self.tasks.close()  # our connections only: shims and containers live on
        self.db.close()

    def stop(self) -> None:
        self._stopped.set()
