"""shim/api: the committed stubs are current, and the messages are containerd 1.6's on the wire.

REAL_* below were transcribed from containerd v1.6.39's own .proto files (runtime/v2/task/
shim.proto, api/types/mount.proto, api/types/task/task.proto, api/events/task.proto,
runtime/v2/runc/options/oci.proto, api/services/ttrpc/events/v1/events.proto): every message's
fields as name -> (number, type), the enums, the services. Our descriptors must match them
exactly, so a renumbered or renamed field fails here, without the network.
"""

import filecmp
import os

import pytest
from google.protobuf import any_pb2, descriptor, empty_pb2, message, timestamp_pb2

from shim.api import typeurl
from shim.api.events import task_pb2 as events_pb2
from shim.api.runc.options import oci_pb2
from shim.api.runtimeoptions.v1 import api_pb2 as runtimeoptions_pb2
from shim.api.services.ttrpc.events.v1 import events_pb2 as ttrpc_events_pb2
from shim.api.task.v2 import shim_pb2
from shim.api.types import mount_pb2
from shim.api.types.task import task_pb2
from stacklab import protogen

MODULES = [
    events_pb2, oci_pb2, runtimeoptions_pb2, ttrpc_events_pb2, shim_pb2, mount_pb2, task_pb2,
]  # fmt: skip

REAL_MESSAGES: dict[str, dict[str, tuple[int, str]]] = {
    "containerd.events.TaskCreate": {
        "container_id": (1, "string"),
        "bundle": (2, "string"),
        "rootfs": (3, "repeated containerd.types.Mount"),
        "io": (4, "containerd.events.TaskIO"),
        "checkpoint": (5, "string"),
        "pid": (6, "uint32"),
    },
    "containerd.events.TaskStart": {"container_id": (1, "string"), "pid": (2, "uint32")},
    "containerd.events.TaskDelete": {
        "container_id": (1, "string"),
        "pid": (2, "uint32"),
        "exit_status": (3, "uint32"),
        "exited_at": (4, "google.protobuf.Timestamp"),
        "id": (5, "string"),
    },
    "containerd.events.TaskIO": {
        "stdin": (1, "string"),
        "stdout": (2, "string"),
        "stderr": (3, "string"),
        "terminal": (4, "bool"),
    },
    "containerd.events.TaskExit": {
        "container_id": (1, "string"),
        "id": (2, "string"),
        "pid": (3, "uint32"),
        "exit_status": (4, "uint32"),
        "exited_at": (5, "google.protobuf.Timestamp"),
    },
    "containerd.events.TaskOOM": {"container_id": (1, "string")},
    "containerd.events.TaskExecAdded": {"container_id": (1, "string"), "exec_id": (2, "string")},
    "containerd.events.TaskExecStarted": {
        "container_id": (1, "string"),
        "exec_id": (2, "string"),
        "pid": (3, "uint32"),
    },
    "containerd.events.TaskPaused": {"container_id": (1, "string")},
    "containerd.events.TaskResumed": {"container_id": (1, "string")},
    "containerd.events.TaskCheckpointed": {
        "container_id": (1, "string"),
        "checkpoint": (2, "string"),
    },
    "containerd.services.events.ttrpc.v1.ForwardRequest": {
        "envelope": (1, "containerd.services.events.ttrpc.v1.Envelope")
    },
    "containerd.services.events.ttrpc.v1.Envelope": {
        "timestamp": (1, "google.protobuf.Timestamp"),
        "namespace": (2, "string"),
        "topic": (3, "string"),
        "event": (4, "google.protobuf.Any"),
    },
    "containerd.types.Mount": {
        "type": (1, "string"),
        "source": (2, "string"),
        "target": (3, "string"),
        "options": (4, "repeated string"),
    },
    "containerd.v1.types.Process": {
        "container_id": (1, "string"),
        "id": (2, "string"),
        "pid": (3, "uint32"),
        "status": (4, "containerd.v1.types.Status"),
        "stdin": (5, "string"),
        "stdout": (6, "string"),
        "stderr": (7, "string"),
        "terminal": (8, "bool"),
        "exit_status": (9, "uint32"),
        "exited_at": (10, "google.protobuf.Timestamp"),
    },
    "containerd.v1.types.ProcessInfo": {"pid": (1, "uint32"), "info": (2, "google.protobuf.Any")},
    "containerd.runc.v1.Options": {
        "no_pivot_root": (1, "bool"),
        "no_new_keyring": (2, "bool"),
        "shim_cgroup": (3, "string"),
        "io_uid": (4, "uint32"),
        "io_gid": (5, "uint32"),
        "binary_name": (6, "string"),
        "root": (7, "string"),
        "criu_path": (8, "string"),
        "systemd_cgroup": (9, "bool"),
        "criu_image_path": (10, "string"),
        "criu_work_path": (11, "string"),
    },
    "runtimeoptions.v1.Options": {"type_url": (1, "string"), "config_path": (2, "string")},
    "containerd.runc.v1.CheckpointOptions": {
        "exit": (1, "bool"),
        "open_tcp": (2, "bool"),
        "external_unix_sockets": (3, "bool"),
        "terminal": (4, "bool"),
        "file_locks": (5, "bool"),
        "empty_namespaces": (6, "repeated string"),
        "cgroups_mode": (7, "string"),
        "image_path": (8, "string"),
        "work_path": (9, "string"),
    },
    "containerd.runc.v1.ProcessDetails": {"exec_id": (1, "string")},
    "containerd.task.v2.CreateTaskRequest": {
        "id": (1, "string"),
        "bundle": (2, "string"),
        "rootfs": (3, "repeated containerd.types.Mount"),
        "terminal": (4, "bool"),
        "stdin": (5, "string"),
        "stdout": (6, "string"),
        "stderr": (7, "string"),
        "checkpoint": (8, "string"),
        "parent_checkpoint": (9, "string"),
        "options": (10, "google.protobuf.Any"),
    },
    "containerd.task.v2.CreateTaskResponse": {"pid": (1, "uint32")},
    "containerd.task.v2.DeleteRequest": {"id": (1, "string"), "exec_id": (2, "string")},
    "containerd.task.v2.DeleteResponse": {
        "pid": (1, "uint32"),
        "exit_status": (2, "uint32"),
        "exited_at": (3, "google.protobuf.Timestamp"),
    },
    "containerd.task.v2.ExecProcessRequest": {
        "id": (1, "string"),
        "exec_id": (2, "string"),
        "terminal": (3, "bool"),
        "stdin": (4, "string"),
        "stdout": (5, "string"),
        "stderr": (6, "string"),
        "spec": (7, "google.protobuf.Any"),
    },
    "containerd.task.v2.ExecProcessResponse": {},
    "containerd.task.v2.ResizePtyRequest": {
        "id": (1, "string"),
        "exec_id": (2, "string"),
        "width": (3, "uint32"),
        "height": (4, "uint32"),
    },
    "containerd.task.v2.StateRequest": {"id": (1, "string"), "exec_id": (2, "string")},
    "containerd.task.v2.StateResponse": {
        "id": (1, "string"),
        "bundle": (2, "string"),
        "pid": (3, "uint32"),
        "status": (4, "containerd.v1.types.Status"),
        "stdin": (5, "string"),
        "stdout": (6, "string"),
        "stderr": (7, "string"),
        "terminal": (8, "bool"),
        "exit_status": (9, "uint32"),
        "exited_at": (10, "google.protobuf.Timestamp"),
        "exec_id": (11, "string"),
    },
    "containerd.task.v2.KillRequest": {
        "id": (1, "string"),
        "exec_id": (2, "string"),
        "signal": (3, "uint32"),
        "all": (4, "bool"),
    },
    "containerd.task.v2.CloseIORequest": {
        "id": (1, "string"),
        "exec_id": (2, "string"),
        "stdin": (3, "bool"),
    },
    "containerd.task.v2.PidsRequest": {"id": (1, "string")},
    "containerd.task.v2.PidsResponse": {
        "processes": (1, "repeated containerd.v1.types.ProcessInfo")
    },
    "containerd.task.v2.CheckpointTaskRequest": {
        "id": (1, "string"),
        "path": (2, "string"),
        "options": (3, "google.protobuf.Any"),
    },
    "containerd.task.v2.UpdateTaskRequest": {
        "id": (1, "string"),
        "resources": (2, "google.protobuf.Any"),
        "annotations": (3, "map<string,string>"),
    },
    "containerd.task.v2.StartRequest": {"id": (1, "string"), "exec_id": (2, "string")},
    "containerd.task.v2.StartResponse": {"pid": (1, "uint32")},
    "containerd.task.v2.WaitRequest": {"id": (1, "string"), "exec_id": (2, "string")},
    "containerd.task.v2.WaitResponse": {
        "exit_status": (1, "uint32"),
        "exited_at": (2, "google.protobuf.Timestamp"),
    },
    "containerd.task.v2.StatsRequest": {"id": (1, "string")},
    "containerd.task.v2.StatsResponse": {"stats": (1, "google.protobuf.Any")},
    "containerd.task.v2.ConnectRequest": {"id": (1, "string")},
    "containerd.task.v2.ConnectResponse": {
        "shim_pid": (1, "uint32"),
        "task_pid": (2, "uint32"),
        "version": (3, "string"),
    },
    "containerd.task.v2.ShutdownRequest": {"id": (1, "string"), "now": (2, "bool")},
    "containerd.task.v2.PauseRequest": {"id": (1, "string")},
    "containerd.task.v2.ResumeRequest": {"id": (1, "string")},
}
REAL_ENUMS: dict[str, dict[str, int]] = {
    "containerd.v1.types.Status": {
        "UNKNOWN": 0,
        "CREATED": 1,
        "RUNNING": 2,
        "STOPPED": 3,
        "PAUSED": 4,
        "PAUSING": 5,
    }
}
REAL_SERVICES: dict[str, dict[str, tuple[str, str]]] = {
    "containerd.services.events.ttrpc.v1.Events": {
        "Forward": ("containerd.services.events.ttrpc.v1.ForwardRequest", "google.protobuf.Empty")
    },
    "containerd.task.v2.Task": {
        "State": ("containerd.task.v2.StateRequest", "containerd.task.v2.StateResponse"),
        "Create": ("containerd.task.v2.CreateTaskRequest", "containerd.task.v2.CreateTaskResponse"),
        "Start": ("containerd.task.v2.StartRequest", "containerd.task.v2.StartResponse"),
        "Delete": ("containerd.task.v2.DeleteRequest", "containerd.task.v2.DeleteResponse"),
        "Pids": ("containerd.task.v2.PidsRequest", "containerd.task.v2.PidsResponse"),
        "Pause": ("containerd.task.v2.PauseRequest", "google.protobuf.Empty"),
        "Resume": ("containerd.task.v2.ResumeRequest", "google.protobuf.Empty"),
        "Checkpoint": ("containerd.task.v2.CheckpointTaskRequest", "google.protobuf.Empty"),
        "Kill": ("containerd.task.v2.KillRequest", "google.protobuf.Empty"),
        "Exec": ("containerd.task.v2.ExecProcessRequest", "google.protobuf.Empty"),
        "ResizePty": ("containerd.task.v2.ResizePtyRequest", "google.protobuf.Empty"),
        "CloseIO": ("containerd.task.v2.CloseIORequest", "google.protobuf.Empty"),
        "Update": ("containerd.task.v2.UpdateTaskRequest", "google.protobuf.Empty"),
        "Wait": ("containerd.task.v2.WaitRequest", "containerd.task.v2.WaitResponse"),
        "Stats": ("containerd.task.v2.StatsRequest", "containerd.task.v2.StatsResponse"),
        "Connect": ("containerd.task.v2.ConnectRequest", "containerd.task.v2.ConnectResponse"),
        "Shutdown": ("containerd.task.v2.ShutdownRequest", "google.protobuf.Empty"),
    },
}

SHIM_TASK_METHODS = [
    "State", "Create", "Start", "Delete", "Pids", "Pause", "Resume", "Checkpoint", "Kill",
    "Exec", "ResizePty", "CloseIO", "Update", "Wait", "Stats", "Connect", "Shutdown",
]  # fmt: skip


# --- the stubs are current -------------------------------------------------------------------


def test_committed_stubs_are_what_protogen_generates(tmp_path: str) -> None:
    protos = protogen.find_protos(os.path.join("shim", "api"))
    assert len(protos) == 8, protos
    written = protogen.generate(protos, str(tmp_path))
    assert len(written) == 2 * len(protos)
    for rel in written:
        committed = os.path.join(protogen.REPO_ROOT, rel)
        assert os.path.exists(committed), f"{rel} is not committed: python -m stacklab.protogen"
        assert filecmp.cmp(os.path.join(tmp_path, rel), committed, shallow=False), (
            f"{rel} is stale: run python -m stacklab.protogen shim/api"
        )


# --- names and numbers, against the table from containerd's files ----------------------------


def _type_of(field: descriptor.FieldDescriptor) -> str:
    """A field's type as the .proto spells it: `repeated X`, `map<K,V>`, `string`, a full name."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = (
            field.message_type.fields_by_name["key"],
            field.message_type.fields_by_name["value"],
        )
        return f"map<{_type_of(key)},{_type_of(value)}>"
    if field.message_type is not None:
        name = field.message_type.full_name
    elif field.enum_type is not None:
        name = field.enum_type.full_name
    else:
        scalar = {
            descriptor.FieldDescriptor.TYPE_STRING: "string",
            descriptor.FieldDescriptor.TYPE_BOOL: "bool",
            descriptor.FieldDescriptor.TYPE_UINT32: "uint32",
            descriptor.FieldDescriptor.TYPE_BYTES: "bytes",
        }
        name = scalar[field.type]
    return ("repeated " if field.is_repeated else "") + name


def _our_messages() -> dict[str, descriptor.Descriptor]:
    found: dict[str, descriptor.Descriptor] = {}
    for module in MODULES:
        for msg in module.DESCRIPTOR.message_types_by_name.values():
            found[msg.full_name] = msg
    return found


def test_every_message_has_containerds_names_and_field_numbers() -> None:
    ours = _our_messages()
    assert sorted(ours) == sorted(REAL_MESSAGES)
    for full_name, real_fields in REAL_MESSAGES.items():
        got = {f.name: (f.number, _type_of(f)) for f in ours[full_name].fields}
        assert got == real_fields, full_name


def test_status_enum_values() -> None:
    for full_name, values in REAL_ENUMS.items():
        enum = task_pb2.DESCRIPTOR.enum_types_by_name[full_name.rsplit(".", 1)[1]]
        assert enum.full_name == full_name
        assert {v.name: v.number for v in enum.values} == values
    assert task_pb2.RUNNING == 2 and task_pb2.PAUSING == 5


def test_services_have_containerds_methods() -> None:
    services = {
        s.full_name: s
        for module in (shim_pb2, ttrpc_events_pb2)
        for s in module.DESCRIPTOR.services_by_name.values()
    }
    assert sorted(services) == sorted(REAL_SERVICES)
    for full_name, methods in REAL_SERVICES.items():
        got = {
            m.name: (m.input_type.full_name, m.output_type.full_name)
            for m in services[full_name].methods
        }
        assert got == methods, full_name
    task = services["containerd.task.v2.Task"]
    assert [m.name for m in task.methods] == SHIM_TASK_METHODS  # declaration order, too


@pytest.mark.parametrize(
    ("cls", "full_name"),
    [
        (shim_pb2.CreateTaskRequest, "containerd.task.v2.CreateTaskRequest"),
        (shim_pb2.StateResponse, "containerd.task.v2.StateResponse"),
        (mount_pb2.Mount, "containerd.types.Mount"),
        (task_pb2.ProcessInfo, "containerd.v1.types.ProcessInfo"),
        (events_pb2.TaskExit, "containerd.events.TaskExit"),
        (events_pb2.TaskOOM, "containerd.events.TaskOOM"),
        (oci_pb2.Options, "containerd.runc.v1.Options"),
        (runtimeoptions_pb2.Options, "runtimeoptions.v1.Options"),
        (ttrpc_events_pb2.Envelope, "containerd.services.events.ttrpc.v1.Envelope"),
    ],
)
def test_full_names(cls: type[message.Message], full_name: str) -> None:
    assert cls.DESCRIPTOR.full_name == full_name


def test_proto_files_import_by_repo_path() -> None:
    assert shim_pb2.DESCRIPTOR.name == "shim/api/task/v2/shim.proto"
    assert shim_pb2.DESCRIPTOR.package == "containerd.task.v2"
    assert [d.name for d in shim_pb2.DESCRIPTOR.dependencies] == [
        "google/protobuf/any.proto",
        "google/protobuf/empty.proto",
        "google/protobuf/timestamp.proto",
        "shim/api/types/mount.proto",
        "shim/api/types/task/task.proto",
    ]


# --- the bytes on the wire, read with a walker of our own -------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def walk(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) for every field in `buf`, in order: varints as ints,
    length-delimited fields as bytes. Fails on any other wire type (these protos have none)."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire_type == 2:
            length, pos = _varint(buf, pos)
            out.append((number, buf[pos : pos + length]))
            pos += length
        else:
            raise AssertionError(f"unexpected wire type {wire_type} for field {number}")
    assert pos == len(buf)
    return out


def test_create_task_request_on_the_wire() -> None:
    opts = oci_pb2.Options(binary_name="runc-py", root="/run/stacklab/runc", systemd_cgroup=True)
    req = shim_pb2.CreateTaskRequest(
        id="c1",
        bundle="/run/containerd/io.containerd.runtime.v2.task/default/c1",
        rootfs=[
            mount_pb2.Mount(type="overlay", source="overlay", options=["lowerdir=/l", "ro"]),
        ],
        terminal=True,
        stdin="/run/fifo/c1-stdin",
        stdout="/run/fifo/c1-stdout",
        options=typeurl.marshal_any(opts),
    )
    fields = walk(req.SerializeToString())
    assert [n for n, _ in fields] == [1, 2, 3, 4, 5, 6, 10]
    by_number = dict(fields)
    assert by_number[1] == b"c1"
    assert by_number[4] == 1
    assert by_number[6] == b"/run/fifo/c1-stdout"
    mount = walk(by_number[3])  # type: ignore[arg-type]
    assert mount == [(1, b"overlay"), (2, b"overlay"), (4, b"lowerdir=/l"), (4, b"ro")]
    any_fields = walk(by_number[10])  # type: ignore[arg-type]
    assert any_fields[0] == (1, b"containerd.runc.v1.Options")  # containerd's type_url: no prefix
    assert any_fields[1][0] == 2
    assert walk(any_fields[1][1]) == [(6, b"runc-py"), (7, b"/run/stacklab/runc"), (9, 1)]  # type: ignore[arg-type]


def test_hand_encoded_bytes_match() -> None:
    # KillRequest{id: "c1", signal: 9, all: true}, written out by hand from shim.proto.
    assert shim_pb2.KillRequest(id="c1", signal=9, all=True).SerializeToString() == (
        b"\x0a\x02c1\x18\x09\x20\x01"
    )
    # ConnectResponse{shim_pid: 300, task_pid: 301, version: "2"}
    assert shim_pb2.ConnectResponse(
        shim_pid=300, task_pid=301, version="2"
    ).SerializeToString() == (b"\x08\xac\x02\x10\xad\x02\x1a\x012")
    # StateResponse.status is field 4 (tag 0x20), exec_id field 11 (tag 11<<3|2 = 0x5a).
    state = shim_pb2.StateResponse(status=task_pb2.STOPPED, exec_id="e")
    assert state.SerializeToString() == b"\x20\x03\x5a\x01e"


def test_decodes_what_containerd_would_send() -> None:
    # TaskExit{container_id: "c1", id: "c1", pid: 42, exit_status: 137, exited_at: {seconds: 5}}
    exited_at = b"\x08\x05"
    raw = b"\x0a\x02c1\x12\x02c1\x18\x2a\x20\x89\x01\x2a" + bytes([len(exited_at)]) + exited_at
    event = events_pb2.TaskExit.FromString(raw)
    assert (event.container_id, event.id, event.pid, event.exit_status) == ("c1", "c1", 42, 137)
    assert event.exited_at.seconds == 5
    # UpdateTaskRequest.annotations: a map is repeated entries {1: key, 2: value} in field 3.
    update = shim_pb2.UpdateTaskRequest.FromString(b"\x0a\x01x\x1a\x06\x0a\x01k\x12\x01v")
    assert update.id == "x" and dict(update.annotations) == {"k": "v"}


def test_exited_at_and_empty_are_the_well_known_types() -> None:
    assert shim_pb2.WaitResponse.DESCRIPTOR.fields_by_name["exited_at"].message_type is (
        timestamp_pb2.Timestamp.DESCRIPTOR
    )
    task = shim_pb2.DESCRIPTOR.services_by_name["Task"]
    assert task.methods_by_name["Kill"].output_type is empty_pb2.Empty.DESCRIPTOR


# --- Any, the containerd way -----------------------------------------------------------------


def test_typeurl_round_trip_and_prefix_tolerance() -> None:
    exit_event = events_pb2.TaskExit(container_id="c1", pid=7)
    packed = typeurl.marshal_any(exit_event)
    assert packed.type_url == "containerd.events.TaskExit"
    assert typeurl.unmarshal_any(packed, events_pb2.TaskExit) == exit_event
    assert typeurl.unmarshal_any_registered(packed) == exit_event
    prefixed = any_pb2.Any()
    prefixed.Pack(oci_pb2.Options(binary_name="runc-py"))
    assert prefixed.type_url == "type.googleapis.com/containerd.runc.v1.Options"
    assert typeurl.unmarshal_any(prefixed, oci_pb2.Options).binary_name == "runc-py"
    with pytest.raises(ValueError):
        typeurl.unmarshal_any(packed, oci_pb2.Options)
    with pytest.raises(KeyError):
        typeurl.unmarshal_any_registered(any_pb2.Any(type_url="no.such.Type"))
