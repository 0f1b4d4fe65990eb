"""The task manager: which shim serves which task, per namespace. Tasks.Create starts a shim in
a fresh bundle and asks it to create the container; Tasks.Delete asks the shim to delete it,
shuts the shim down and removes the bundle. At start-up it finds every bundle on disk,
reconnects to the shims that live, and cleans up after the ones that died — publishing the
exits that happened while nobody listened, as containerd's runtime v2 does."""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import any_pb2, timestamp_pb2

from containerd_py.errdefs import AlreadyExists, ContainerdError, NotFound
from containerd_py.exchange import Exchange
from containerd_py.runtime.bundle import Bundle, list_bundles
from containerd_py.runtime.shim import Launcher, Shim, find_binary
from shim.api.events import task_pb2 as task_events
from shim.api.task.v2 import shim_pb2 as task
from shim.api.types import mount_pb2
from shim.api.types.task import task_pb2 as task_types

log = logging.getLogger("containerd-py.runtime")


@dataclass
class CreateOpts:
    spec: bytes
    runtime: str
    runtime_path: str
    rootfs: list[mount_pb2.Mount]
    stdin: str
    stdout: str
    stderr: str
    terminal: bool
    options: any_pb2.Any | None


@dataclass
class Exit:
    pid: int
    status: int
    exited_at: timestamp_pb2.Timestamp


class TaskManager:
    def __init__(self, state: str, root: str, launcher: Launcher, exchange: Exchange) -> None:
        self.state = state
        self.root = root
        self.launcher = launcher
        self.exchange = exchange
        self._lock = threading.Lock()
        self._tasks: dict[tuple[str, str], Shim] = {}
        self._busy: set[tuple[str, str]] = set()  # ids being created or deleted right now

    def get(self, ns: str, id: str) -> Shim:
        with self._lock:
            shim = self._tasks.get((ns, id))
        if shim is None or self._reap_if_dead(shim):
            raise NotFound(f"task {id} not found")
        return shim

    def list(self, ns: str) -> list[Shim]:
        with self._lock:
            shims = [shim for (n, _), shim in sorted(self._tasks.items()) if n == ns]
        return [shim for shim in shims if not self._reap_if_dead(shim)]

    def _reap_if_dead(self, shim: Shim) -> bool:
        """A shim whose connection closed (it was killed) is cleaned up as at start-up: its
        binary's `delete`, the exit and delete events, the bundle removed."""
        if not shim.client.closed:
            return False
        key = (shim.bundle.namespace, shim.id)
        with self._lock:
            if self._tasks.get(key) is not shim:
                return True  # another thread reaped it
            del self._tasks[key]
        shim.close()
        self._cleanup_dead(shim.bundle, None, shim.binary)
        return True

    def _claim(self, ns: str, id: str) -> None:
        with self._lock:
            if (ns, id) in self._tasks or (ns, id) in self._busy:
                raise AlreadyExists(f"task {id}")
            self._busy.add((ns, id))

    def create(
        self, ns: str, id: str, opts: CreateOpts, traceparent: str | None
    ) -> tuple[Shim, int]:
        self._claim(ns, id)
        try:
            binary = find_binary(opts.runtime, opts.runtime_path)
            bundle = Bundle.create(self.state, self.root, ns, id, opts.spec)
            try:
                shim = self.launcher.start(bundle, binary, opts.options)
            except ContainerdError as e:
                bundle.delete()
                raise _wrapped(e, "failed to start shim") from None
            except BaseException:
                bundle.delete()
                raise
            try:
                created = shim.call(
                    "Create",
                    task.CreateTaskRequest(
                        id=id, bundle=bundle.path, rootfs=opts.rootfs, terminal=opts.terminal,
                        stdin=opts.stdin, stdout=opts.stdout, stderr=opts.stderr,
                        options=opts.options,
                    ),
                    task.CreateTaskResponse,
                    traceparent,
                )  # fmt: skip
            except ContainerdError as e:
                self._teardown(shim)
                raise _wrapped(e, "failed to create shim task") from None
            except BaseException:
                self._teardown(shim)
                raise
            with self._lock:
                self._tasks[(ns, id)] = shim
            return shim, created.pid
        finally:
            with self._lock:
                self._busy.discard((ns, id))

    def delete(self, ns: str, id: str, traceparent: str | None) -> Exit:
        shim = self.get(ns, id)
        response = shim.call("Delete", task.DeleteRequest(id=id), task.DeleteResponse, traceparent)
        with self._lock:
            self._tasks.pop((ns, id), None)
        self._teardown(shim, deleted=True)
        return Exit(response.pid, response.exit_status, response.exited_at)

    def _teardown(self, shim: Shim, deleted: bool = False) -> None:
        """Shut the shim down and remove its bundle (after a delete, or a failed create)."""
        if not deleted:
            try:
                shim.call("Delete", task.DeleteRequest(id=shim.id), task.DeleteResponse, timeout=10)
            except ContainerdError:
                pass  # never created
        shim.shutdown()
        shim.bundle.delete()

    def close(self) -> None:
        """Drop our connections; the shims and their containers live on."""
        with self._lock:
            shims, self._tasks = list(self._tasks.values()), {}
        for shim in shims:
            shim.close()

    # -- start-up

    def recover(self, runtime_of: Callable[[str, str], str | None]) -> None:
        """Reconnect to every shim with a bundle on disk; clean up the dead ones.
        `runtime_of(ns, id)` is the container's runtime name (None: no such container)."""
        for bundle in list_bundles(self.state, self.root):
            try:
                shim = self.launcher.load(bundle)
            except ContainerdError as e:
                log.info("shim of %s/%s is gone (%s): cleaning up", bundle.namespace, bundle.id, e)
                self._cleanup_dead(bundle, runtime_of(bundle.namespace, bundle.id))
                continue
            with self._lock:
                self._tasks[(bundle.namespace, bundle.id)] = shim
            self._publish_missed_exit(shim)

    def _publish_missed_exit(self, shim: Shim) -> None:
        """A task that exited while we were down: its shim still knows how."""
        try:
            state = shim.state()
        except ContainerdError:
            return
        if state.status == task_types.STOPPED:
            self.exchange.publish(
                shim.bundle.namespace,
                "/tasks/exit",
                task_events.TaskExit(
                    container_id=shim.id, id=shim.id, pid=state.pid,
                    exit_status=state.exit_status, exited_at=state.exited_at,
                ),
            )  # fmt: skip

    def _cleanup_dead(self, bundle: Bundle, runtime: str | None, binary: str = "") -> None:
        if not binary:
            try:
                binary = bundle.read("shim-binary-path")
            except NotFound:
                binary = find_binary(runtime) if runtime else ""
        if binary:
            try:
                response = self.launcher.delete(bundle, binary)
                ns, id = bundle.namespace, bundle.id
                exit = task_events.TaskExit(
                    container_id=id, id=id, pid=response.pid,
                    exit_status=response.exit_status, exited_at=response.exited_at,
                )  # fmt: skip
                self.exchange.publish(ns, "/tasks/exit", exit)
                self.exchange.publish(
                    ns,
                    "/tasks/delete",
                    task_events.TaskDelete(
                        container_id=id, id=id, pid=response.pid,
                        exit_status=response.exit_status, exited_at=response.exited_at,
                    ),
                )  # fmt: skip
            except ContainerdError as e:
                log.warning("cleanup of dead shim %s/%s: %s", bundle.namespace, bundle.id, e)
        bundle.delete()


def _wrapped(error: ContainerdError, context: str) -> ContainerdError:
    """`context: error`, keeping the error's code, as Go's `%w` wrapping keeps its class."""
    wrapped = type(error)(f"{context}: {error}")
    wrapped.code = error.code
    return wrapped
