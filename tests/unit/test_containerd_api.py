"""containerd_py/api: containerd 1.6.20's v1 gRPC API, exact on the wire, loadable beside shim/api.

REAL_* below were transcribed from containerd v1.6.20's own .proto files (api/services/*/v1,
api/types, api/events): every service's methods in declaration order with their request and
response types and streaming flags, the enums, and the fields (name -> (number, type)) of the
messages ctr leans on. A renamed method, a flipped streaming flag or a renumbered field fails
here, without the network. The gRPC method path ctr calls is "/<service full name>/<method>".
"""

import importlib
import os
import pkgutil
from types import ModuleType

import pytest
from google.protobuf import descriptor, descriptor_pool, message

import containerd_py.api
import shim.api
from containerd_py.api.events import image_pb2 as image_events_pb2
from containerd_py.api.services.content.v1 import content_pb2
from containerd_py.api.services.events.v1 import events_pb2
from containerd_py.api.services.images.v1 import images_pb2
from containerd_py.api.services.snapshots.v1 import snapshots_pb2
from containerd_py.api.services.tasks.v1 import tasks_pb2
from containerd_py.api.services.version.v1 import version_pb2
from containerd_py.api.types import descriptor_pb2
from shim.api.types import mount_pb2
from shim.api.types.task import task_pb2
from stacklab import protogen

# Our .proto files and the package each declares (image events keep upstream's odd package).
PROTO_PACKAGES = {
    "containerd_py/api/types/descriptor.proto": "containerd.types",
    "containerd_py/api/types/platform.proto": "containerd.types",
    "containerd_py/api/types/metrics.proto": "containerd.types",
    "containerd_py/api/events/namespace.proto": "containerd.events",
    "containerd_py/api/events/image.proto": "containerd.services.images.v1",
    "containerd_py/api/events/content.proto": "containerd.events",
    "containerd_py/api/events/snapshot.proto": "containerd.events",
    "containerd_py/api/events/container.proto": "containerd.events",
    "containerd_py/api/services/version/v1/version.proto": "containerd.services.version.v1",
    "containerd_py/api/services/namespaces/v1/namespace.proto": "containerd.services.namespaces.v1",
    "containerd_py/api/services/introspection/v1/introspection.proto": (
        "containerd.services.introspection.v1"
    ),
    "containerd_py/api/services/content/v1/content.proto": "containerd.services.content.v1",
    "containerd_py/api/services/images/v1/images.proto": "containerd.services.images.v1",
    "containerd_py/api/services/leases/v1/leases.proto": "containerd.services.leases.v1",
    "containerd_py/api/services/snapshots/v1/snapshots.proto": "containerd.services.snapshots.v1",
    "containerd_py/api/services/diff/v1/diff.proto": "containerd.services.diff.v1",
    "containerd_py/api/services/events/v1/events.proto": "containerd.services.events.v1",
    "containerd_py/api/services/containers/v1/containers.proto": "containerd.services.containers.v1",
    "containerd_py/api/services/tasks/v1/tasks.proto": "containerd.services.tasks.v1",
}

REAL_MESSAGES: dict[str, dict[str, tuple[int, str]]] = {
    "containerd.services.content.v1.Info": {
        "digest": (1, "string"),
        "size": (2, "int64"),
        "created_at": (3, "google.protobuf.Timestamp"),
        "updated_at": (4, "google.protobuf.Timestamp"),
        "labels": (5, "map<string,string>"),
    },
    "containerd.services.content.v1.ReadContentRequest": {
        "digest": (1, "string"),
        "offset": (2, "int64"),
        "size": (3, "int64"),
    },
    "containerd.services.content.v1.ReadContentResponse": {
        "offset": (1, "int64"),
        "data": (2, "bytes"),
    },
    "containerd.services.content.v1.Status": {
        "started_at": (1, "google.protobuf.Timestamp"),
        "updated_at": (2, "google.protobuf.Timestamp"),
        "ref": (3, "string"),
        "offset": (4, "int64"),
        "total": (5, "int64"),
        "expected": (6, "string"),
    },
    "containerd.services.content.v1.WriteContentRequest": {
        "action": (1, "containerd.services.content.v1.WriteAction"),
        "ref": (2, "string"),
        "total": (3, "int64"),
        "expected": (4, "string"),
        "offset": (5, "int64"),
        "data": (6, "bytes"),
        "labels": (7, "map<string,string>"),
    },
    "containerd.services.content.v1.WriteContentResponse": {
        "action": (1, "containerd.services.content.v1.WriteAction"),
        "started_at": (2, "google.protobuf.Timestamp"),
        "updated_at": (3, "google.protobuf.Timestamp"),
        "offset": (4, "int64"),
        "total": (5, "int64"),
        "digest": (6, "string"),
    },
    "containerd.services.images.v1.Image": {
        "name": (1, "string"),
        "labels": (2, "map<string,string>"),
        "target": (3, "containerd.types.Descriptor"),
        "created_at": (7, "google.protobuf.Timestamp"),
        "updated_at": (8, "google.protobuf.Timestamp"),
    },
    "containerd.services.images.v1.DeleteImageRequest": {
        "name": (1, "string"),
        "sync": (2, "bool"),
    },
    "containerd.services.images.v1.ImageCreate": {
        "name": (1, "string"),
        "labels": (2, "map<string,string>"),
    },
    "containerd.types.Descriptor": {
        "media_type": (1, "string"),
        "digest": (2, "string"),
        "size": (3, "int64"),
        "annotations": (5, "map<string,string>"),
    },
    "containerd.types.Platform": {
        "os": (1, "string"),
        "architecture": (2, "string"),
        "variant": (3, "string"),
    },
    "containerd.types.Metric": {
        "timestamp": (1, "google.protobuf.Timestamp"),
        "id": (2, "string"),
        "data": (3, "google.protobuf.Any"),
    },
    "containerd.services.snapshots.v1.PrepareSnapshotRequest": {
        "snapshotter": (1, "string"),
        "key": (2, "string"),
        "parent": (3, "string"),
        "labels": (4, "map<string,string>"),
    },
    "containerd.services.snapshots.v1.CommitSnapshotRequest": {
        "snapshotter": (1, "string"),
        "name": (2, "string"),
        "key": (3, "string"),
        "labels": (4, "map<string,string>"),
    },
    "containerd.services.snapshots.v1.Info": {
        "name": (1, "string"),
        "parent": (2, "string"),
        "kind": (3, "containerd.services.snapshots.v1.Kind"),
        "created_at": (4, "google.protobuf.Timestamp"),
        "updated_at": (5, "google.protobuf.Timestamp"),
        "labels": (6, "map<string,string>"),
    },
    "containerd.services.snapshots.v1.ListSnapshotsRequest": {
        "snapshotter": (1, "string"),
        "filters": (2, "repeated string"),
    },
    "containerd.services.diff.v1.ApplyRequest": {
        "diff": (1, "containerd.types.Descriptor"),
        "mounts": (2, "repeated containerd.types.Mount"),
        "payloads": (3, "map<string,google.protobuf.Any>"),
    },
    "containerd.services.diff.v1.DiffRequest": {
        "left": (1, "repeated containerd.types.Mount"),
        "right": (2, "repeated containerd.types.Mount"),
        "media_type": (3, "string"),
        "ref": (4, "string"),
        "labels": (5, "map<string,string>"),
    },
    "containerd.services.diff.v1.DiffResponse": {
        "diff": (3, "containerd.types.Descriptor"),
    },
    "containerd.services.events.v1.Envelope": {
        "timestamp": (1, "google.protobuf.Timestamp"),
        "namespace": (2, "string"),
        "topic": (3, "string"),
        "event": (4, "google.protobuf.Any"),
    },
    "containerd.services.events.v1.SubscribeRequest": {
        "filters": (1, "repeated string"),
    },
    "containerd.services.events.v1.PublishRequest": {
        "topic": (1, "string"),
        "event": (2, "google.protobuf.Any"),
    },
    "containerd.services.containers.v1.Container": {
        "id": (1, "string"),
        "labels": (2, "map<string,string>"),
        "image": (3, "string"),
        "runtime": (4, "containerd.services.containers.v1.Container.Runtime"),
        "spec": (5, "google.protobuf.Any"),
        "snapshotter": (6, "string"),
        "snapshot_key": (7, "string"),
        "created_at": (8, "google.protobuf.Timestamp"),
        "updated_at": (9, "google.protobuf.Timestamp"),
        "extensions": (10, "map<string,google.protobuf.Any>"),
    },
    "containerd.services.containers.v1.Container.Runtime": {
        "name": (1, "string"),
        "options": (2, "google.protobuf.Any"),
    },
    "containerd.services.containers.v1.UpdateContainerRequest": {
        "container": (1, "containerd.services.containers.v1.Container"),
        "update_mask": (2, "google.protobuf.FieldMask"),
    },
    "containerd.services.tasks.v1.CreateTaskRequest": {
        "container_id": (1, "string"),
        "rootfs": (3, "repeated containerd.types.Mount"),
        "stdin": (4, "string"),
        "stdout": (5, "string"),
        "stderr": (6, "string"),
        "terminal": (7, "bool"),
        "checkpoint": (8, "containerd.types.Descriptor"),
        "options": (9, "google.protobuf.Any"),
        "runtime_path": (10, "string"),
    },
    "containerd.services.tasks.v1.DeleteResponse": {
        "id": (1, "string"),
        "pid": (2, "uint32"),
        "exit_status": (3, "uint32"),
        "exited_at": (4, "google.protobuf.Timestamp"),
    },
    "containerd.services.tasks.v1.KillRequest": {
        "container_id": (1, "string"),
        "exec_id": (2, "string"),
        "signal": (3, "uint32"),
        "all": (4, "bool"),
    },
    "containerd.services.tasks.v1.ExecProcessRequest": {
        "container_id": (1, "string"),
        "stdin": (2, "string"),
        "stdout": (3, "string"),
        "stderr": (4, "string"),
        "terminal": (5, "bool"),
        "spec": (6, "google.protobuf.Any"),
        "exec_id": (7, "string"),
    },
    "containerd.services.tasks.v1.GetResponse": {
        "process": (1, "containerd.v1.types.Process"),
    },
    "containerd.services.tasks.v1.WaitResponse": {
        "exit_status": (1, "uint32"),
        "exited_at": (2, "google.protobuf.Timestamp"),
    },
    "containerd.services.tasks.v1.MetricsResponse": {
        "metrics": (1, "repeated containerd.types.Metric"),
    },
    "containerd.services.namespaces.v1.Namespace": {
        "name": (1, "string"),
        "labels": (2, "map<string,string>"),
    },
    "containerd.services.namespaces.v1.ListNamespacesRequest": {
        "filter": (1, "string"),
    },
    "containerd.services.introspection.v1.Plugin": {
        "type": (1, "string"),
        "id": (2, "string"),
        "requires": (3, "repeated string"),
        "platforms": (4, "repeated containerd.types.Platform"),
        "exports": (5, "map<string,string>"),
        "capabilities": (6, "repeated string"),
        "init_err": (7, "google.rpc.Status"),
    },
    "containerd.services.introspection.v1.ServerResponse": {
        "uuid": (1, "string"),
    },
    "containerd.services.version.v1.VersionResponse": {
        "version": (1, "string"),
        "revision": (2, "string"),
    },
    "containerd.services.leases.v1.Lease": {
        "id": (1, "string"),
        "created_at": (2, "google.protobuf.Timestamp"),
        "labels": (3, "map<string,string>"),
    },
    "containerd.services.leases.v1.CreateRequest": {
        "id": (1, "string"),
        "labels": (3, "map<string,string>"),
    },
    "containerd.services.leases.v1.AddResourceRequest": {
        "id": (1, "string"),
        "resource": (2, "containerd.services.leases.v1.Resource"),
    },
    "containerd.events.ContainerCreate": {
        "id": (1, "string"),
        "image": (2, "string"),
        "runtime": (3, "containerd.events.ContainerCreate.Runtime"),
    },
    "containerd.events.SnapshotPrepare": {
        "key": (1, "string"),
        "parent": (2, "string"),
    },
    "containerd.events.ContentDelete": {
        "digest": (1, "string"),
    },
    "containerd.events.NamespaceCreate": {
        "name": (1, "string"),
        "labels": (2, "map<string,string>"),
    },
}
REAL_ENUMS: dict[str, dict[str, int]] = {
    "containerd.services.content.v1.WriteAction": {"STAT": 0, "WRITE": 1, "COMMIT": 2},
    "containerd.services.snapshots.v1.Kind": {"UNKNOWN": 0, "VIEW": 1, "ACTIVE": 2, "COMMITTED": 3},
}
REAL_SERVICES: dict[str, list[str]] = {
    "containerd.services.containers.v1.Containers": [
        "Get(GetContainerRequest) returns (GetContainerResponse)",
        "List(ListContainersRequest) returns (ListContainersResponse)",
        "ListStream(ListContainersRequest) returns (stream ListContainerMessage)",
        "Create(CreateContainerRequest) returns (CreateContainerResponse)",
        "Update(UpdateContainerRequest) returns (UpdateContainerResponse)",
        "Delete(DeleteContainerRequest) returns (google.protobuf.Empty)",
    ],
    "containerd.services.content.v1.Content": [
        "Info(InfoRequest) returns (InfoResponse)",
        "Update(UpdateRequest) returns (UpdateResponse)",
        "List(ListContentRequest) returns (stream ListContentResponse)",
        "Delete(DeleteContentRequest) returns (google.protobuf.Empty)",
        "Read(ReadContentRequest) returns (stream ReadContentResponse)",
        "Status(StatusRequest) returns (StatusResponse)",
        "ListStatuses(ListStatusesRequest) returns (ListStatusesResponse)",
        "Write(stream WriteContentRequest) returns (stream WriteContentResponse)",
        "Abort(AbortRequest) returns (google.protobuf.Empty)",
    ],
    "containerd.services.diff.v1.Diff": [
        "Apply(ApplyRequest) returns (ApplyResponse)",
        "Diff(DiffRequest) returns (DiffResponse)",
    ],
    "containerd.services.events.v1.Events": [
        "Publish(PublishRequest) returns (google.protobuf.Empty)",
        "Forward(ForwardRequest) returns (google.protobuf.Empty)",
        "Subscribe(SubscribeRequest) returns (stream Envelope)",
    ],
    "containerd.services.images.v1.Images": [
        "Get(GetImageRequest) returns (GetImageResponse)",
        "List(ListImagesRequest) returns (ListImagesResponse)",
        "Create(CreateImageRequest) returns (CreateImageResponse)",
        "Update(UpdateImageRequest) returns (UpdateImageResponse)",
        "Delete(DeleteImageRequest) returns (google.protobuf.Empty)",
    ],
    "containerd.services.introspection.v1.Introspection": [
        "Plugins(PluginsRequest) returns (PluginsResponse)",
        "Server(google.protobuf.Empty) returns (ServerResponse)",
    ],
    "containerd.services.leases.v1.Leases": [
        "Create(CreateRequest) returns (CreateResponse)",
        "Delete(DeleteRequest) returns (google.protobuf.Empty)",
        "List(ListRequest) returns (ListResponse)",
        "AddResource(AddResourceRequest) returns (google.protobuf.Empty)",
        "DeleteResource(DeleteResourceRequest) returns (google.protobuf.Empty)",
        "ListResources(ListResourcesRequest) returns (ListResourcesResponse)",
    ],
    "containerd.services.namespaces.v1.Namespaces": [
        "Get(GetNamespaceRequest) returns (GetNamespaceResponse)",
        "List(ListNamespacesRequest) returns (ListNamespacesResponse)",
        "Create(CreateNamespaceRequest) returns (CreateNamespaceResponse)",
        "Update(UpdateNamespaceRequest) returns (UpdateNamespaceResponse)",
        "Delete(DeleteNamespaceRequest) returns (google.protobuf.Empty)",
    ],
    "containerd.services.snapshots.v1.Snapshots": [
        "Prepare(PrepareSnapshotRequest) returns (PrepareSnapshotResponse)",
        "View(ViewSnapshotRequest) returns (ViewSnapshotResponse)",
        "Mounts(MountsRequest) returns (MountsResponse)",
        "Commit(CommitSnapshotRequest) returns (google.protobuf.Empty)",
        "Remove(RemoveSnapshotRequest) returns (google.protobuf.Empty)",
        "Stat(StatSnapshotRequest) returns (StatSnapshotResponse)",
        "Update(UpdateSnapshotRequest) returns (UpdateSnapshotResponse)",
        "List(ListSnapshotsRequest) returns (stream ListSnapshotsResponse)",
        "Usage(UsageRequest) returns (UsageResponse)",
        "Cleanup(CleanupRequest) returns (google.protobuf.Empty)",
    ],
    "containerd.services.tasks.v1.Tasks": [
        "Create(CreateTaskRequest) returns (CreateTaskResponse)",
        "Start(StartRequest) returns (StartResponse)",
        "Delete(DeleteTaskRequest) returns (DeleteResponse)",
        "DeleteProcess(DeleteProcessRequest) returns (DeleteResponse)",
        "Get(GetRequest) returns (GetResponse)",
        "List(ListTasksRequest) returns (ListTasksResponse)",
        "Kill(KillRequest) returns (google.protobuf.Empty)",
        "Exec(ExecProcessRequest) returns (google.protobuf.Empty)",
        "ResizePty(ResizePtyRequest) returns (google.protobuf.Empty)",
        "CloseIO(CloseIORequest) returns (google.protobuf.Empty)",
        "Pause(PauseTaskRequest) returns (google.protobuf.Empty)",
        "Resume(ResumeTaskRequest) returns (google.protobuf.Empty)",
        "ListPids(ListPidsRequest) returns (ListPidsResponse)",
        "Checkpoint(CheckpointTaskRequest) returns (CheckpointTaskResponse)",
        "Update(UpdateTaskRequest) returns (google.protobuf.Empty)",
        "Metrics(MetricsRequest) returns (MetricsResponse)",
        "Wait(WaitRequest) returns (WaitResponse)",
    ],
    "containerd.services.version.v1.Version": [
        "Version(google.protobuf.Empty) returns (VersionResponse)",
    ],
}


# --- helpers -------------------------------------------------------------------------------------


def _pb2_modules(package: ModuleType) -> list[ModuleType]:
    """Import every *_pb2 module under `package`."""
    found = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith("_pb2"):
            found.append(importlib.import_module(info.name))
    return found


_SCALARS = {
    descriptor.FieldDescriptor.TYPE_STRING: "string",
    descriptor.FieldDescriptor.TYPE_BOOL: "bool",
    descriptor.FieldDescriptor.TYPE_UINT32: "uint32",
    descriptor.FieldDescriptor.TYPE_INT64: "int64",
    descriptor.FieldDescriptor.TYPE_UINT64: "uint64",
    descriptor.FieldDescriptor.TYPE_BYTES: "bytes",
}


def _type_of(field: descriptor.FieldDescriptor) -> str:
    """A field's type as the .proto spells it: `repeated X`, `map<K,V>`, a scalar, a full name."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key = field.message_type.fields_by_name["key"]
        value = field.message_type.fields_by_name["value"]
        return f"map<{_type_of(key)},{_type_of(value)}>"
    if field.message_type is not None:
        name = field.message_type.full_name
    elif field.enum_type is not None:
        name = field.enum_type.full_name
    else:
        name = _SCALARS[field.type]
    return ("repeated " if field.is_repeated else "") + name


def _all_messages(desc: descriptor.Descriptor) -> list[descriptor.Descriptor]:
    return [desc] + [m for nested in desc.nested_types for m in _all_messages(nested)]


# --- tests ---------------------------------------------------------------------------------------


def test_proto_files_and_packages() -> None:
    protos = protogen.find_protos(os.path.join("containerd_py", "api"))
    assert sorted(protos) == sorted(PROTO_PACKAGES)
    pool = descriptor_pool.Default()
    _pb2_modules(containerd_py.api)
    for proto, package in PROTO_PACKAGES.items():
        assert pool.FindFileByName(proto).package == package, proto


def test_proto_files_drop_go_only_options() -> None:
    for proto in PROTO_PACKAGES:
        with open(os.path.join(protogen.REPO_ROOT, proto), encoding="utf-8") as f:
            text = f.read()
        assert 'syntax = "proto3";' in text, proto
        code = "\n".join(line.split("//")[0] for line in text.splitlines())
        assert "gogoproto" not in code and "fieldpath" not in code, proto
        imports = [line for line in code.splitlines() if line.startswith("import ")]
        assert imports == sorted(imports), proto
        for line in imports:  # by repo path (or well-known types), never upstream's Go paths
            assert line.startswith(
                ('import "containerd_py/', 'import "shim/', 'import "google/')
            ), line


def test_everything_loads_with_the_shim_and_defines_each_name_once() -> None:
    ours = _pb2_modules(containerd_py.api)
    shims = _pb2_modules(shim.api)
    assert len(ours) == len(PROTO_PACKAGES)
    assert len(shims) >= 8
    defined: dict[str, str] = {}
    for module in ours + shims:
        file = module.DESCRIPTOR
        names = [
            m.full_name for top in file.message_types_by_name.values() for m in _all_messages(top)
        ]
        names += [e.full_name for e in file.enum_types_by_name.values()]
        names += [s.full_name for s in file.services_by_name.values()]
        for name in names:
            assert name not in defined, f"{name} in both {defined[name]} and {file.name}"
            defined[name] = file.name


def test_shared_types_are_the_shims() -> None:
    """Mount, Process and ProcessInfo are imported from shim/api, not redefined."""
    tasks = tasks_pb2.DESCRIPTOR.message_types_by_name
    assert (
        tasks["GetResponse"].fields_by_name["process"].message_type is task_pb2.Process.DESCRIPTOR
    )
    pids = tasks["ListPidsResponse"].fields_by_name["processes"].message_type
    assert pids is task_pb2.ProcessInfo.DESCRIPTOR
    rootfs = tasks["CreateTaskRequest"].fields_by_name["rootfs"].message_type
    assert rootfs is mount_pb2.Mount.DESCRIPTOR
    prepare = snapshots_pb2.PrepareSnapshotResponse.DESCRIPTOR.fields_by_name["mounts"]
    assert prepare.message_type is mount_pb2.Mount.DESCRIPTOR
    target = images_pb2.Image.DESCRIPTOR.fields_by_name["target"].message_type
    assert target is descriptor_pb2.Descriptor.DESCRIPTOR


def _signature(method: descriptor.MethodDescriptor) -> str:
    """`Name(Request) returns (stream Response)` as the .proto spells it; message names in the
    service's own package are written short."""
    package = method.containing_service.file.package + "."

    def name(msg: descriptor.Descriptor, stream: bool) -> str:
        short = msg.full_name.removeprefix(package)
        return ("stream " if stream else "") + short

    request = name(method.input_type, method.client_streaming)
    response = name(method.output_type, method.server_streaming)
    return f"{method.name}({request}) returns ({response})"


def test_services_have_containerds_methods_and_streaming() -> None:
    modules = _pb2_modules(containerd_py.api)
    pool = descriptor_pool.Default()
    for full_name, methods in REAL_SERVICES.items():
        service = pool.FindServiceByName(full_name)
        assert [_signature(m) for m in service.methods] == methods, full_name
    services = {s.full_name for m in modules for s in m.DESCRIPTOR.services_by_name.values()}
    assert services == set(REAL_SERVICES)


@pytest.mark.parametrize(
    ("service", "method", "client_streaming", "server_streaming"),
    [
        ("containerd.services.content.v1.Content", "Read", False, True),
        ("containerd.services.content.v1.Content", "Write", True, True),
        ("containerd.services.content.v1.Content", "List", False, True),
        ("containerd.services.content.v1.Content", "ListStatuses", False, False),
        ("containerd.services.events.v1.Events", "Subscribe", False, True),
        ("containerd.services.snapshots.v1.Snapshots", "List", False, True),
        ("containerd.services.containers.v1.Containers", "ListStream", False, True),
        ("containerd.services.tasks.v1.Tasks", "Wait", False, False),
    ],
)
def test_streaming_flags(
    service: str, method: str, client_streaming: bool, server_streaming: bool
) -> None:
    _pb2_modules(containerd_py.api)
    found = descriptor_pool.Default().FindMethodByName(f"{service}.{method}")
    assert (found.client_streaming, found.server_streaming) == (client_streaming, server_streaming)


def test_every_tasks_method_is_unary() -> None:
    tasks = tasks_pb2.DESCRIPTOR.services_by_name["Tasks"]
    assert tasks.full_name == "containerd.services.tasks.v1.Tasks"
    assert len(tasks.methods) == 17
    assert not any(m.client_streaming or m.server_streaming for m in tasks.methods)


def test_messages_have_containerds_names_and_field_numbers() -> None:
    _pb2_modules(containerd_py.api)
    pool = descriptor_pool.Default()
    for full_name, real_fields in REAL_MESSAGES.items():
        msg = pool.FindMessageTypeByName(full_name)
        got = {f.name: (f.number, _type_of(f)) for f in msg.fields}
        assert got == real_fields, full_name


def test_enums_have_containerds_values() -> None:
    _pb2_modules(containerd_py.api)
    pool = descriptor_pool.Default()
    for full_name, values in REAL_ENUMS.items():
        enum = pool.FindEnumTypeByName(full_name)
        assert {v.name: v.number for v in enum.values} == values, full_name


@pytest.mark.parametrize(
    ("cls", "full_name"),
    [
        (image_events_pb2.ImageCreate, "containerd.services.images.v1.ImageCreate"),
        (events_pb2.Envelope, "containerd.services.events.v1.Envelope"),
        (content_pb2.WriteContentRequest, "containerd.services.content.v1.WriteContentRequest"),
        (descriptor_pb2.Descriptor, "containerd.types.Descriptor"),
    ],
)
def test_full_names(cls: type[message.Message], full_name: str) -> None:
    # Event payloads travel in Any with the full name as type URL, so this is a wire fact too.
    assert cls.DESCRIPTOR.full_name == full_name


def test_wire_bytes() -> None:
    version = version_pb2.VersionResponse(version="v1.6.20", revision="abc")
    assert version.SerializeToString() == b"\x0a\x07v1.6.20\x12\x03abc"
    write = content_pb2.WriteContentRequest(
        action=content_pb2.COMMIT, ref="r", total=3, offset=0, data=b"xyz"
    )
    # action (1, varint 2), ref (2), total (3, varint 3), data (6); offset 0 is not sent.
    assert write.SerializeToString() == b"\x08\x02\x12\x01r\x18\x03\x32\x03xyz"
    envelope = events_pb2.Envelope(namespace="default", topic="/tasks/exit")
    assert envelope.SerializeToString() == b"\x12\x07default\x1a\x0b/tasks/exit"
