"""containerd.services.tasks.v1.Tasks: every call finds the task's shim and forwards to the
shim's Task API over ttrpc, carrying this call's span as the `traceparent`. Checkpoint is not
offered (grpc answers UNIMPLEMENTED)."""

from collections.abc import Sequence

from google.protobuf import empty_pb2, timestamp_pb2

from containerd_py import filters
from containerd_py.api.services.tasks.v1 import tasks_pb2 as api
from containerd_py.api.types import metrics_pb2
from containerd_py.errdefs import ContainerdError, InvalidArgument
from containerd_py.metadata.containers import Containers
from containerd_py.rpc import Call
from containerd_py.runtime.manager import CreateOpts, TaskManager
from containerd_py.runtime.shim import Shim
from shim.api.task.v2 import shim_pb2 as task
from shim.api.types.task import task_pb2 as task_types


def process(shim: Shim, state: task.StateResponse) -> task_types.Process:
    return task_types.Process(
        container_id=shim.id,
        id=state.exec_id or shim.id,
        pid=state.pid,
        status=state.status,
        stdin=state.stdin,
        stdout=state.stdout,
        stderr=state.stderr,
        terminal=state.terminal,
        exit_status=state.exit_status,
        exited_at=state.exited_at,
    )


class TasksService:
    def __init__(self, containers: Containers, manager: TaskManager, default_runtime: str) -> None:
        self.containers = containers
        self.manager = manager
        self.default_runtime = default_runtime

    def Create(self, request: api.CreateTaskRequest, call: Call) -> api.CreateTaskResponse:
        ns = call.namespace
        container = self.containers.get(ns, request.container_id)
        if request.HasField("checkpoint") and request.checkpoint.digest:
            raise InvalidArgument("checkpoints are not supported by containerd-py")
        runtime = container.runtime
        options = request.options if request.HasField("options") else None
        if options is None and runtime.HasField("options"):
            options = runtime.options
        opts = CreateOpts(
            spec=container.spec.value,
            runtime=runtime.name or self.default_runtime,
            runtime_path=request.runtime_path,
            rootfs=list(request.rootfs),
            stdin=request.stdin,
            stdout=request.stdout,
            stderr=request.stderr,
            terminal=request.terminal,
            options=options,
        )
        call.span.attrs.update(container_id=request.container_id, runtime=opts.runtime)
        _, pid = self.manager.create(ns, request.container_id, opts, call.traceparent)
        return api.CreateTaskResponse(container_id=request.container_id, pid=pid)

    def _shim(self, call: Call, id: str) -> Shim:
        """The container first, as containerd looks it up: an unknown id is the container's
        NotFound; a container without a task is the task's."""
        self.containers.get(call.namespace, id)
        return self.manager.get(call.namespace, id)

    def Start(self, request: api.StartRequest, call: Call) -> api.StartResponse:
        shim = self._shim(call, request.container_id)
        started = shim.call(
            "Start",
            task.StartRequest(id=shim.id, exec_id=request.exec_id),
            task.StartResponse,
            call.traceparent,
        )
        return api.StartResponse(pid=started.pid)

    def Delete(self, request: api.DeleteTaskRequest, call: Call) -> api.DeleteResponse:
        self.containers.get(call.namespace, request.container_id)
        exit = self.manager.delete(call.namespace, request.container_id, call.traceparent)
        return api.DeleteResponse(
            id=request.container_id,
            pid=exit.pid,
            exit_status=exit.status,
            exited_at=exit.exited_at,
        )

    def DeleteProcess(self, request: api.DeleteProcessRequest, call: Call) -> api.DeleteResponse:
        if not request.exec_id:
            raise InvalidArgument("exec id cannot be empty")  # Delete is for the init process
        shim = self._shim(call, request.container_id)
        deleted = shim.call(
            "Delete",
            task.DeleteRequest(id=shim.id, exec_id=request.exec_id),
            task.DeleteResponse,
            call.traceparent,
        )
        return api.DeleteResponse(
            id=request.exec_id,
            pid=deleted.pid,
            exit_status=deleted.exit_status,
            exited_at=deleted.exited_at,
        )

    def Get(self, request: api.GetRequest, call: Call) -> api.GetResponse:
        shim = self._shim(call, request.container_id)
        return api.GetResponse(process=process(shim, shim.state(request.exec_id)))

    def List(self, request: api.ListTasksRequest, call: Call) -> api.ListTasksResponse:
        match = filters.parse_all(request.filter) if request.filter else filters.parse_all()
        tasks = []
        for shim in self.manager.list(call.namespace):
            try:
                proc = process(shim, shim.state())
            except ContainerdError:  # a shim that just went away is not listed
                continue
            if match.match(_process_adaptor(proc)):
                tasks.append(proc)
        return api.ListTasksResponse(tasks=tasks)

    def Kill(self, request: api.KillRequest, call: Call) -> empty_pb2.Empty:
        shim = self._shim(call, request.container_id)
        kill = task.KillRequest(
            id=shim.id, exec_id=request.exec_id, signal=request.signal, all=request.all
        )
        shim.call("Kill", kill, empty_pb2.Empty, call.traceparent)
        return empty_pb2.Empty()

    def Exec(self, request: api.ExecProcessRequest, call: Call) -> empty_pb2.Empty:
        if not request.exec_id:
            raise InvalidArgument("exec id cannot be empty")
        shim = self._shim(call, request.container_id)
        exec_request = task.ExecProcessRequest(
            id=shim.id,
            exec_id=request.exec_id,
            terminal=request.terminal,
            stdin=request.stdin,
            stdout=request.stdout,
            stderr=request.stderr,
            spec=request.spec,
        )
        shim.call("Exec", exec_request, empty_pb2.Empty, call.traceparent)
        return empty_pb2.Empty()

    def ResizePty(self, request: api.ResizePtyRequest, call: Call) -> empty_pb2.Empty:
        shim = self._shim(call, request.container_id)
        resize = task.ResizePtyRequest(
            id=shim.id, exec_id=request.exec_id, width=request.width, height=request.height
        )
        shim.call("ResizePty", resize, empty_pb2.Empty, call.traceparent)
        return empty_pb2.Empty()

    def CloseIO(self, request: api.CloseIORequest, call: Call) -> empty_pb2.Empty:
        shim = self._shim(call, request.container_id)
        close = task.CloseIORequest(id=shim.id, exec_id=request.exec_id, stdin=request.stdin)
        shim.call("CloseIO", close, empty_pb2.Empty, call.traceparent)
        return empty_pb2.Empty()

    def Pause(self, request: api.PauseTaskRequest, call: Call) -> empty_pb2.Empty:
        shim = self._shim(call, request.container_id)
        shim.call("Pause", task.PauseRequest(id=shim.id), empty_pb2.Empty, call.traceparent)
        return empty_pb2.Empty()

    def Resume(self, request: api.ResumeTaskRequest, call: Call) -> empty_pb2.Empty:
        shim = self._shim(call, request.container_id)
        shim.call("Resume", task.ResumeRequest(id=shim.id), empty_pb2.Empty, call.traceparent)
        return empty_pb2.Empty()

    def ListPids(self, request: api.ListPidsRequest, call: Call) -> api.ListPidsResponse:
        shim = self._shim(call, request.container_id)
        pids = shim.call("Pids", task.PidsRequest(id=shim.id), task.PidsResponse, call.traceparent)
        return api.ListPidsResponse(processes=pids.processes)

    def Update(self, request: api.UpdateTaskRequest, call: Call) -> empty_pb2.Empty:
        shim = self._shim(call, request.container_id)
        update = task.UpdateTaskRequest(
            id=shim.id, resources=request.resources, annotations=request.annotations
        )
        shim.call("Update", update, empty_pb2.Empty, call.traceparent)
        return empty_pb2.Empty()

    def Metrics(self, request: api.MetricsRequest, call: Call) -> api.MetricsResponse:
        match = filters.parse_all(*request.filters)
        metrics = []
        for shim in self.manager.list(call.namespace):
            if not match.match(_id_adaptor(shim.id)):
                continue
            stats = shim.call("Stats", task.StatsRequest(id=shim.id), task.StatsResponse)
            now = timestamp_pb2.Timestamp()
            now.GetCurrentTime()
            metrics.append(metrics_pb2.Metric(timestamp=now, id=shim.id, data=stats.stats))
        return api.MetricsResponse(metrics=metrics)

    def Wait(self, request: api.WaitRequest, call: Call) -> api.WaitResponse:
        shim = self._shim(call, request.container_id)
        waited = shim.call(
            "Wait",
            task.WaitRequest(id=shim.id, exec_id=request.exec_id),
            task.WaitResponse,
            call.traceparent,
            timeout=None,
        )
        return api.WaitResponse(exit_status=waited.exit_status, exited_at=waited.exited_at)


def _process_adaptor(proc: task_types.Process) -> filters.Adaptor:
    def adapt(path: Sequence[str]) -> tuple[str, bool]:
        field = path[0] if path else ""
        if field == "id":
            return proc.id, True
        if field == "status":
            return task_types.Status.Name(proc.status).lower(), True
        return "", False

    return adapt


def _id_adaptor(id: str) -> filters.Adaptor:
    def adapt(path: Sequence[str]) -> tuple[str, bool]:
        return (id, True) if list(path) == ["id"] else ("", False)

    return adapt
