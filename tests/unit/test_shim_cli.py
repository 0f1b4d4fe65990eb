"""The shim's command line as containerd writes it, and the small pure parts of the shim."""

import hashlib
import os
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from shim import cli, mount, reaper
from stacklab import mounts


def test_go_style_flags_then_command() -> None:
    f = cli.parse(
        ["-namespace", "ns", "-address", "/run/c.sock", "-publish-binary", "/usr/bin/containerd",
         "-id", "c1", "-debug", "start"]
    )  # fmt: skip
    assert (f.namespace, f.address, f.publish_binary, f.id, f.debug, f.command) == (
        "ns", "/run/c.sock", "/usr/bin/containerd", "c1", True, "start",
    )  # fmt: skip
    f = cli.parse(["--namespace=ns", "-id=c1", "-bundle", "/b", "delete"])
    assert (f.namespace, f.id, f.bundle, f.command) == ("ns", "c1", "/b", "delete")
    assert cli.parse(["-namespace", "ns", "-id", "c1"]).command == "serve"


@pytest.mark.parametrize(
    "argv", [["-nope", "x"], ["-id"], ["-id", "c1", "frobnicate"], ["-id", "c1", "start", "x"]]
)
def test_bad_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse(argv)
    assert exc.value.code == 2


def test_socket_path_like_containerd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STACKLAB_ROOT", raising=False)
    f = cli.parse(["-namespace", "ns", "-address", "/run/c.sock", "-id", "c1"])
    digest = hashlib.sha256(b"/run/c.sock/ns/c1").hexdigest()
    assert cli.socket_path(f) == f"/run/containerd/s/{digest}"
    monkeypatch.setenv("STACKLAB_ROOT", "/tmp/sl")
    assert cli.socket_path(f) == f"/tmp/sl/containerd/s/{digest}"
    monkeypatch.setenv("STACKLAB_ROOT", "/tmp/" + "d" * 80)  # too deep for sun_path
    assert cli.socket_path(f) == f"/run/containerd/s/{digest}"


def test_mount_options() -> None:
    flags, data = mount.parse_options(["ro", "nosuid", "lowerdir=/a:/b", "upperdir=/u", "rw"])
    assert flags == mounts.MS_NOSUID
    assert data == "lowerdir=/a:/b,upperdir=/u"
    assert (
        mount.parse_options(["rbind", "ro"])[0] == mounts.MS_BIND | mounts.MS_REC | mounts.MS_RDONLY
    )


def test_exit_codes() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert reaper.exit_code(status) == 3
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), 9)
    _, status = os.waitpid(pid, 0)
    assert reaper.exit_code(status) == 137


@pytest.mark.parametrize("pid,status,ns", [(1234, 137, 1_700_000_000_123_456_789), (0, 0, 0)])
def test_delete_response_wire_format(pid: int, status: int, ns: int) -> None:
    from shim.api.task.v2 import shim_pb2

    want = shim_pb2.DeleteResponse(pid=pid, exit_status=status)
    want.exited_at.FromNanoseconds(ns)
    assert cli.delete_response(pid, status, ns) == want.SerializeToString()


def test_runtime_options(tmp_path: Path) -> None:
    from shim.api import typeurl
    from shim.api.runc.options import oci_pb2
    from shim.api.runtimeoptions.v1 import api_pb2 as runtimeoptions_pb2
    from shim.service import runtime_options
    from shim.ttrpc import Code, TTRPCError

    assert runtime_options(any_pb2.Any()) == ("", "")
    runc = typeurl.marshal_any(oci_pb2.Options(binary_name="/usr/sbin/runc", root="/r"))
    assert runtime_options(runc) == ("/usr/sbin/runc", "/r")
    config = tmp_path / "runtime.toml"
    config.write_text('BinaryName = "/usr/sbin/runc"\nroot = "/r2"\n')
    ref = typeurl.marshal_any(runtimeoptions_pb2.Options(config_path=str(config)))
    assert runtime_options(ref) == ("/usr/sbin/runc", "/r2")
    with pytest.raises(TTRPCError) as err:
        runtime_options(any_pb2.Any(type_url="some.Other", value=b""))
    assert err.value.code == Code.INVALID_ARGUMENT
    missing = typeurl.marshal_any(runtimeoptions_pb2.Options(config_path=str(tmp_path / "nope")))
    with pytest.raises(TTRPCError):
        runtime_options(missing)


def test_stdio_opens_fifos_without_blocking(tmp_path: Path) -> None:
    """stdout on a fifo nobody reads yet: opened at once, and the reader gets what was written
    and end-of-file when the last writer closes."""
    from shim import stdio

    fifo = tmp_path / "out"
    os.mkfifo(fifo)
    io = stdio.Stdio("", str(fifo), str(fifo))
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    os.write(io.fds[1], b"hi\n")
    io.close()
    assert os.read(reader, 100) == b"hi\n"
    assert os.read(reader, 100) == b""  # end-of-file: no writer left
    os.close(reader)
