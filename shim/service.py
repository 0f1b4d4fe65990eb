"""The shim's Task service (`containerd.task.v2.Task` over ttrpc), like containerd-shim-runc-v2's
runtime/v2/runc/v2/service.go (cmd/containerd-shim-runc-v2/task/service.go in later releases):
one method per proto method, same names, each calling the OCI runtime's command line.

One shim holds one container: its init process (exec id "") and its exec processes. Exits come
from the reaper; each becomes a /tasks/exit event and wakes `Wait`.
"""

import json
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from google.protobuf import any_pb2, timestamp_pb2

from shim import mount, oom, stdio
from shim.api import typeurl
from shim.api.events import task_pb2 as events
from shim.api.runc.options import oci_pb2
from shim.api.runtimeoptions.v1 import api_pb2 as runtimeoptions_pb2
from shim.api.task.v2 import shim_pb2 as api
from shim.api.types.task import task_pb2 as tasktypes
from shim.events import Publisher
from shim.reaper import Exit, Reaper
from shim.runtime import CommandError, Runtime, default_binary, default_root, write_options
from shim.ttrpc import Code, Context, TTRPCError
from stacklab import tracing

SERVICE = "containerd.task.v2.Task"


def runtime_options(options: any_pb2.Any) -> tuple[str, str]:
    """(binary, root) from Create's options, either of them "" when not given: runc's options
    (`BinaryName`, `Root`), or runtimeoptions' `ConfigPath`, a TOML file with the same keys
    (`BinaryName = "/usr/sbin/runc"` or `binary_name = ...`), which `ctr run
    --runtime-config-path` names for runtimes other than io.containerd.runc.v2."""
    if not options.type_url:
        return "", ""
    name = typeurl.full_name(options)
    try:
        if name == oci_pb2.Options.DESCRIPTOR.full_name:
            opts = typeurl.unmarshal_any(options, oci_pb2.Options)
            return opts.binary_name, opts.root
        if name == runtimeoptions_pb2.Options.DESCRIPTOR.full_name:
            path = typeurl.unmarshal_any(options, runtimeoptions_pb2.Options).config_path
            if not path:
                return "", ""
            import tomllib

            with open(path, "rb") as f:
                conf = {k.replace("_", "").lower(): v for k, v in tomllib.load(f).items()}
            return str(conf.get("binaryname", "")), str(conf.get("root", ""))
    except (OSError, ValueError) as err:
        raise TTRPCError(Code.INVALID_ARGUMENT, f"runtime options: {err}") from None
    raise TTRPCError(Code.INVALID_ARGUMENT, f"runtime options of unknown type {name}")


def timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


class Process:
    """The init process or one exec: its pid and, once the reaper saw it, its exit."""

    def __init__(self, exec_id: str, stdin: str, stdout: str, stderr: str, terminal: bool) -> None:
        self.exec_id = exec_id
        self.stdin, self.stdout, self.stderr, self.terminal = stdin, stdout, stderr, terminal
        self.pid = 0
        self.status: int = tasktypes.CREATED
        self.exit_status = 0
        self.exited_at_ns = 0
        self.exited = threading.Event()
        self.spec = b""  # an exec's process.json
        self.console: stdio.Console | None = None

    def set_exit(self, exit: Exit) -> None:
        self.exit_status = exit.status
        self.exited_at_ns = exit.time_ns
        self.status = tasktypes.STOPPED
        self.exited.set()


_local = threading.local()  # each ttrpc request runs in a thread of its own
H = TypeVar("H", bound=Callable[["Service", bytes, Context], bytes])


def traced(handler: H) -> H:
    """Record the call as span `Task.<Method>`, continuing the caller's `traceparent`; the
    runtime commands it runs get this span as their parent through TRACEPARENT."""

    def wrapper(self: "Service", data: bytes, ctx: Context) -> bytes:
        name = f"Task.{handler.__name__}"
        attrs = {"id": self.container_id}
        with tracing.span(name, "shim", ctx.get("traceparent"), attrs) as span:
            _local.traceparent = span.traceparent
            try:
                return handler(self, data, ctx)
            finally:
                _local.traceparent = None

    wrapper.__name__ = wrapper.__qualname__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper  # type: ignore[return-value]


def _parse(cls: type, data: bytes):  # type: ignore[no-untyped-def]
    msg = cls()
    try:
        msg.ParseFromString(data)
    except Exception as err:
        raise TTRPCError(Code.INVALID_ARGUMENT, f"{cls.__name__}: {err}") from None
    return msg


def _runtime_error(err: CommandError) -> TTRPCError:
    return TTRPCError(Code.UNKNOWN, f"OCI runtime {err.command} failed: {err.message}")


class Service:
    """Serves one container. `shutdown` is what Shutdown calls to end the shim."""

    def __init__(
        self,
        namespace: str,
        container_id: str,
        publisher: Publisher,
        reaper: Reaper,
        shutdown: Callable[[], None],
    ) -> None:
        self.namespace = namespace
        self.container_id = container_id
        self.publisher = publisher
        self.reaper = reaper
        self.shutdown = shutdown
        self.lock = threading.RLock()
        self.bundle = ""
        self.runtime: Runtime | None = None
        self.init: Process | None = None
        self.execs: dict[str, Process] = {}
        self.deleted = False
        # A process's exit is published after its start event: containerd's clients (ctr run
        # waits on both) and `ctr events` expect start before exit, and a fast process can be
        # reaped before Start has published. Keyed by exec id (the init: container id).
        self.starting: set[str] = set()
        self.held_exits: dict[str, events.TaskExit] = {}
        reaper.on_exit.append(self.on_exit)

    # --- helpers ------------------------------------------------------------------------------

    def process(self, cid: str, exec_id: str) -> Process:
        if self.init is None or self.deleted or (cid and cid != self.container_id):
            raise TTRPCError(Code.NOT_FOUND, f"container {cid or self.container_id}: not found")
        if not exec_id:
            return self.init
        proc = self.execs.get(exec_id)
        if proc is None:
            raise TTRPCError(Code.NOT_FOUND, f"process {exec_id} does not exist")
        return proc

    def rt(self) -> Runtime:
        assert self.runtime is not None
        return self.runtime

    @staticmethod
    def env(ctx: Context) -> dict[str, str] | None:
        """The runtime's environment: TRACEPARENT naming the current span, if any."""
        tp = getattr(_local, "traceparent", None) or ctx.get("traceparent")
        return {tracing.TRACEPARENT_ENV: tp} if tp else None

    def run_with_io(
        self, args: list[str], stdin: str, stdout: str, stderr: str, terminal: bool, ctx: Context
    ) -> stdio.Console | None:
        """Run `create` or `exec` with the process's stdio: the fifos themselves, or, with a
        terminal, a console socket, and then the copying between the pty and the fifos."""
        if not terminal:
            io = stdio.Stdio(stdin, stdout, stderr)
            try:
                self.rt().run(*args, stdio=io.fds, env=self.env(ctx))
            finally:
                io.close()
            return None
        console = stdio.Console()
        try:
            argv = [args[0], "--console-socket", console.path, *args[1:]]
            self.rt().run(*argv, stdio=(-1, -1, -1), env=self.env(ctx))
            console.receive()
        except BaseException:
            console.remove_socket()
            raise
        console.start_copy(stdin, stdout)
        return console

    def on_exit(self, exit: Exit) -> None:
        with self.lock:
            procs = [self.init, *self.execs.values()]
            proc = next((p for p in procs if p is not None and p.pid == exit.pid), None)
            if proc is None or proc.exited.is_set():
                return
            proc.set_exit(exit)
            key = proc.exec_id or self.container_id
            event = events.TaskExit(
                container_id=self.container_id,
                id=key,
                pid=exit.pid,
                exit_status=exit.status,
                exited_at=timestamp(exit.time_ns),
            )
            if key in self.starting:
                self.held_exits[key] = event
                return
        self.publisher.publish("/tasks/exit", event)

    def begin_start(self, key: str) -> None:
        with self.lock:
            self.starting.add(key)

    def end_start(self, key: str) -> None:
        """The start event is out (or the start failed): release an exit held back."""
        with self.lock:
            self.starting.discard(key)
            held = self.held_exits.pop(key, None)
        if held is not None:
            self.publisher.publish("/tasks/exit", held)

    def started(self, proc: Process, pid: int) -> None:
        """Record `pid` and catch an exit the reaper saw before we knew the pid."""
        with self.lock:
            proc.pid = pid
            if proc.status == tasktypes.CREATED:
                proc.status = tasktypes.RUNNING if proc.exec_id else proc.status
        if (exit := self.reaper.peek(pid)) is not None:
            self.on_exit(exit)

    # --- the Task service ---------------------------------------------------------------------

    @traced
    def Create(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.CreateTaskRequest, data)
        with self.lock:
            if self.init is not None:
                raise TTRPCError(Code.ALREADY_EXISTS, f"container {req.id}: already exists")
            if req.checkpoint:
                raise TTRPCError(Code.UNIMPLEMENTED, "restore from a checkpoint")
            binary, root = runtime_options(req.options)
            binary = binary or default_binary()
            root = os.path.join(root or default_root(), self.namespace)
            self.container_id, self.bundle = req.id, req.bundle
            write_options(req.bundle, binary, root)
            self.runtime = Runtime(binary, root, os.path.join(req.bundle, "log.json"), self.reaper)
            rootfs = os.path.join(req.bundle, "rootfs")
            os.makedirs(rootfs, exist_ok=True)
            mounted = False
            try:
                if len(req.rootfs):
                    mount.mount_all(((m.type, m.source, m.options) for m in req.rootfs), rootfs)
                    mounted = True
                pid_file = os.path.join(req.bundle, "init.pid")
                console = self.run_with_io(
                    ["create", "--bundle", req.bundle, "--pid-file", pid_file, req.id],
                    req.stdin, req.stdout, req.stderr, req.terminal, ctx,
                )  # fmt: skip
                with open(pid_file) as f:
                    pid = int(f.read().strip())
            except CommandError as err:
                if mounted:
                    mount.unmount_all(rootfs)
                raise _runtime_error(err) from None
            except OSError as err:
                if mounted:
                    mount.unmount_all(rootfs)
                raise TTRPCError(Code.INTERNAL, str(err)) from None
            init = Process("", req.stdin, req.stdout, req.stderr, req.terminal)
            init.console = console
            self.init = init
        self.started(init, pid)
        self.publisher.publish(
            "/tasks/create",
            events.TaskCreate(
                container_id=req.id,
                bundle=req.bundle,
                rootfs=req.rootfs,
                io=events.TaskIO(
                    stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal
                ),
                checkpoint=req.checkpoint,
                pid=pid,
            ),
        )
        oom.watch(
            pid,
            lambda: self.publisher.publish(
                "/tasks/oom", events.TaskOOM(container_id=self.container_id)
            ),
        )
        return api.CreateTaskResponse(pid=pid).SerializeToString()

    @traced
    def Start(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.StartRequest, data)
        proc = self.process(req.id, req.exec_id)
        if proc.status != tasktypes.CREATED or (proc.exec_id and proc.pid):
            raise TTRPCError(
                Code.FAILED_PRECONDITION, f"process {req.exec_id or req.id}: already started"
            )
        key = proc.exec_id or self.container_id
        self.begin_start(key)
        try:
            return self._start(proc, ctx)
        finally:
            self.end_start(key)

    def _start(self, proc: Process, ctx: Context) -> bytes:
        if not proc.exec_id:
            try:
                self.rt().run("start", self.container_id, env=self.env(ctx))
            except CommandError as err:
                raise _runtime_error(err) from None
            with self.lock:
                if proc.status == tasktypes.CREATED:
                    proc.status = tasktypes.RUNNING
            self.publisher.publish(
                "/tasks/start", events.TaskStart(container_id=self.container_id, pid=proc.pid)
            )
            return api.StartResponse(pid=proc.pid).SerializeToString()
        spec_path = os.path.join(self.bundle, f"exec-{proc.exec_id}.json")
        pid_file = os.path.join(self.bundle, f"exec-{proc.exec_id}.pid")
        with open(spec_path, "wb") as f:
            f.write(proc.spec)
        try:
            proc.console = self.run_with_io(
                ["exec", "--detach", "--process", spec_path, "--pid-file", pid_file,
                 self.container_id],
                proc.stdin, proc.stdout, proc.stderr, proc.terminal, ctx,
            )  # fmt: skip
            with open(pid_file) as f:
                pid = int(f.read().strip())
        except CommandError as err:
            raise _runtime_error(err) from None
        finally:
            for path in (spec_path, pid_file):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        self.started(proc, pid)
        self.publisher.publish(
            "/tasks/exec-started",
            events.TaskExecStarted(container_id=self.container_id, exec_id=proc.exec_id, pid=pid),
        )
        return api.StartResponse(pid=pid).SerializeToString()

    @traced
    def Delete(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.DeleteRequest, data)
        proc = self.process(req.id, req.exec_id)
        if proc.exec_id:
            if proc.pid and not proc.exited.is_set():
                raise TTRPCError(Code.FAILED_PRECONDITION, f"process {proc.exec_id}: running")
            with self.lock:
                del self.execs[proc.exec_id]
        else:
            if proc.status in (tasktypes.RUNNING, tasktypes.PAUSED) and not proc.exited.is_set():
                raise TTRPCError(
                    Code.FAILED_PRECONDITION,
                    f"container {self.container_id}: cannot delete a running process",
                )
            try:
                self.rt().run("delete", "--force", self.container_id, env=self.env(ctx))
            except CommandError as err:
                if "not exist" not in err.message and "not found" not in err.message:
                    raise _runtime_error(err) from None
            if proc.pid and not proc.exited.wait(5):  # a created init killed by delete
                pass
            mount.unmount_all(os.path.join(self.bundle, "rootfs"))
            with self.lock:
                self.deleted = True
        exited_at = timestamp(proc.exited_at_ns or time.time_ns())
        self.publisher.publish(
            "/tasks/delete",
            events.TaskDelete(
                container_id=self.container_id,
                pid=proc.pid,
                exit_status=proc.exit_status,
                exited_at=exited_at,
                id=proc.exec_id or self.container_id,
            ),
        )
        return api.DeleteResponse(
            pid=proc.pid, exit_status=proc.exit_status, exited_at=exited_at
        ).SerializeToString()

    def State(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.StateRequest, data)
        proc = self.process(req.id, req.exec_id)
        resp = api.StateResponse(
            id=proc.exec_id or self.container_id,
            bundle=self.bundle,
            pid=proc.pid,
            status=proc.status,  # type: ignore[arg-type]
            stdin=proc.stdin,
            stdout=proc.stdout,
            stderr=proc.stderr,
            terminal=proc.terminal,
            exit_status=proc.exit_status,
            exec_id=proc.exec_id,
        )
        if proc.exited_at_ns:
            resp.exited_at.CopyFrom(timestamp(proc.exited_at_ns))
        return resp.SerializeToString()

    @traced
    def Wait(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.WaitRequest, data)
        proc = self.process(req.id, req.exec_id)
        while not proc.exited.wait(1.0):
            if ctx.expired():
                raise TTRPCError(Code.DEADLINE_EXCEEDED, "context deadline exceeded")
        return api.WaitResponse(
            exit_status=proc.exit_status, exited_at=timestamp(proc.exited_at_ns)
        ).SerializeToString()

    @traced
    def Kill(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.KillRequest, data)
        proc = self.process(req.id, req.exec_id)
        if proc.exited.is_set() or not proc.pid:
            raise TTRPCError(Code.NOT_FOUND, "process already finished")  # runc-v2's words
        if proc.exec_id:
            try:
                os.kill(proc.pid, req.signal)
            except ProcessLookupError:
                raise TTRPCError(Code.NOT_FOUND, "process already finished") from None
            return b""
        args = ["kill", *(["--all"] if req.all else []), self.container_id, str(req.signal)]
        try:
            self.rt().run(*args, env=self.env(ctx))
        except CommandError as err:
            if proc.exited.wait(0.1):
                raise TTRPCError(Code.NOT_FOUND, "process already finished") from None
            raise _runtime_error(err) from None
        return b""

    @traced
    def Exec(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.ExecProcessRequest, data)
        self.process(req.id, "")
        with self.lock:
            if req.exec_id in self.execs:
                raise TTRPCError(Code.ALREADY_EXISTS, f"id {req.exec_id}: already exists")
            proc = Process(req.exec_id, req.stdin, req.stdout, req.stderr, req.terminal)
            proc.spec = req.spec.value
            self.execs[req.exec_id] = proc
        self.publisher.publish(
            "/tasks/exec-added",
            events.TaskExecAdded(container_id=self.container_id, exec_id=req.exec_id),
        )
        return b""

    def Pids(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.PidsRequest, data)
        self.process(req.id, "")
        try:
            out = self.rt().run("ps", "--format", "json", self.container_id)
        except CommandError as err:
            raise _runtime_error(err) from None
        pids = json.loads(out or b"[]") or []
        return api.PidsResponse(
            processes=[tasktypes.ProcessInfo(pid=int(p)) for p in pids]
        ).SerializeToString()

    @traced
    def Pause(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.PauseRequest, data)
        proc = self.process(req.id, "")
        try:
            self.rt().run("pause", self.container_id, env=self.env(ctx))
        except CommandError as err:
            raise _runtime_error(err) from None
        proc.status = tasktypes.PAUSED
        self.publisher.publish("/tasks/paused", events.TaskPaused(container_id=self.container_id))
        return b""

    @traced
    def Resume(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.ResumeRequest, data)
        proc = self.process(req.id, "")
        try:
            self.rt().run("resume", self.container_id, env=self.env(ctx))
        except CommandError as err:
            raise _runtime_error(err) from None
        proc.status = tasktypes.RUNNING
        self.publisher.publish("/tasks/resumed", events.TaskResumed(container_id=self.container_id))
        return b""

    def CloseIO(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.CloseIORequest, data)
        proc = self.process(req.id, req.exec_id)
        if req.stdin and proc.console is not None:
            proc.console.close_stdin()
        return b""  # without a terminal the process holds its stdin fifo itself

    def ResizePty(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.ResizePtyRequest, data)
        proc = self.process(req.id, req.exec_id)
        if proc.console is not None:
            proc.console.resize(req.width, req.height)
        return b""

    def Connect(self, data: bytes, ctx: Context) -> bytes:
        _parse(api.ConnectRequest, data)
        pid = self.init.pid if self.init is not None else 0
        return api.ConnectResponse(shim_pid=os.getpid(), task_pid=pid).SerializeToString()

    @traced
    def Shutdown(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.ShutdownRequest, data)
        with self.lock:
            live = self.init is not None and not self.deleted
        if live and not req.now:
            return b""  # containers still here: the shim stays, as the runc shim does
        self.shutdown()
        return b""

    @traced
    def Update(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.UpdateTaskRequest, data)
        self.process(req.id, "")
        # The Any holds the OCI LinuxResources as JSON: the runtime reads that file as it is.
        path = os.path.join(self.bundle, "resources.json")
        with open(path, "wb") as f:
            f.write(req.resources.value)
        try:
            self.rt().run("update", "--resources", path, self.container_id, env=self.env(ctx))
        except CommandError as err:
            raise _runtime_error(err) from None
        finally:
            os.unlink(path)
        return b""

    def Stats(self, data: bytes, ctx: Context) -> bytes:
        req = _parse(api.StatsRequest, data)
        proc = self.process(req.id, "")
        from shim import metrics

        if metrics.is_v2():
            raise TTRPCError(Code.UNIMPLEMENTED, "Stats: cgroup v2 metrics not yet implemented")
        if proc.exited.is_set() or not proc.pid:
            raise TTRPCError(Code.NOT_FOUND, f"container {self.container_id}: not running")
        try:
            stats = metrics.stat(proc.pid)
        except OSError as err:
            raise TTRPCError(Code.NOT_FOUND, f"container {self.container_id}: {err}") from None
        return api.StatsResponse(stats=typeurl.marshal_any(stats)).SerializeToString()

    def Checkpoint(self, data: bytes, ctx: Context) -> bytes:
        raise TTRPCError(Code.UNIMPLEMENTED, "Checkpoint: not implemented")
