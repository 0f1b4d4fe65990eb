"""runc-py's pure parts, without root: flag parsing, the tracing header, the list table,
secure_join, mount options, sizes and signals."""

import json
import os
import signal
from pathlib import Path

import pytest

from runc_py.commands.kill import parse_signal
from runc_py.commands.list import table
from runc_py.commands.update import ram_in_bytes
from runc_py.container.rootfs import parse_options, secure_join
from runc_py.errors import RuntimeErr, UsageError
from runc_py.flags import Flag, parse
from runc_py.linux import libc
from stacklab import tracing

FLAGS = [
    Flag("bundle", "str", aliases=("b",), default="."),
    Flag("detach", "bool", ("d",)),
    Flag("env", "multi", ("e",)),
    Flag("preserve-fds", "int", default=0),
]


def test_flags_go_style() -> None:
    opts, pos = parse(FLAGS, ["-b", "/x", "--detach", "-e", "A=1", "--env=B=2", "id", "-e", "x"])
    assert opts["bundle"] == "/x" and opts["detach"] is True
    assert opts["env"] == ["A=1", "B=2"]
    assert pos == ["id", "-e", "x"]  # flags stop at the first argument
    opts, pos = parse(FLAGS, ["--detach=false", "--preserve-fds=2", "--", "-id"])
    assert opts["detach"] is False and opts["preserve-fds"] == 2 and pos == ["-id"]


@pytest.mark.parametrize(
    "args", [["--nope"], ["--bundle"], ["--preserve-fds", "x"], ["--detach=maybe"]]
)
def test_flags_errors(args: list[str]) -> None:
    with pytest.raises(UsageError):
        parse(FLAGS, args)


def test_traceparent_parse_and_span_record(tmp_path: Path) -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ctx = tracing.parse_traceparent(tp)
    assert ctx is not None and ctx.trace_id == "0af7651916cd43dd8448eb211c80319c"
    for bad in (
        None,
        "",
        "garbage",
        "00-xyz-b7ad6b7169203331-01",
        "ff-" + tp[3:],
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",
    ):
        assert tracing.parse_traceparent(bad) is None
    log = tmp_path / "t" / "spans.jsonl"
    with tracing.span("op", "test", tp, {"k": 1}, path=str(log)) as s:
        child = tracing.Span("inner", "test", s.traceparent)
    (rec,) = tracing.read_spans(str(log))
    assert rec["trace_id"] == ctx.trace_id and rec["parent_id"] == ctx.span_id
    assert rec["name"] == "op" and rec["attrs"] == {"k": 1} and rec["end_ns"] >= rec["start_ns"]
    assert child.parent_id == rec["span_id"]
    with pytest.raises(ValueError), tracing.span("boom", "test", path=str(log)):
        raise ValueError("x")
    last = json.loads(log.read_text().splitlines()[-1])
    assert last["parent_id"] is None and last["trace_id"] != ctx.trace_id
    assert "ValueError" in last["attrs"]["error"]


def test_list_table_matches_tabwriter() -> None:
    out = table([["ID", "PID", "STATUS"], ["a-very-long-container-id", "1", "running"]])
    lines = out.splitlines()
    assert lines[0] == "ID" + " " * 25 + "PID" + " " * 9 + "STATUS"
    assert lines[1].startswith("a-very-long-container-id   1           running")


def test_secure_join_stays_in_root(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")  # absolute: means the rootfs's /etc
    os.symlink("../../../../..", root / "up")
    os.symlink("loop", root / "loop")
    assert secure_join(str(root), "/abs/passwd") == str(root / "etc" / "passwd")
    assert secure_join(str(root), "/up/etc/x") == str(root / "etc" / "x")
    assert secure_join(str(root), "../../x") == str(root / "x")
    with pytest.raises(RuntimeErr):
        secure_join(str(root), "/loop/x")


def test_mount_options() -> None:
    flags, prop, data = parse_options(["nosuid", "ro", "rw", "rslave", "mode=755", "size=1k"])
    assert flags == libc.MS_NOSUID
    assert prop == libc.MS_SLAVE | libc.MS_REC
    assert data == "mode=755,size=1k"


def test_sizes_and_signals() -> None:
    assert ram_in_bytes("64m") == 64 << 20
    assert ram_in_bytes("1GiB") == 1 << 30
    assert ram_in_bytes("512kb") == 512 << 10
    assert ram_in_bytes("-1") == -1
    with pytest.raises(RuntimeErr):
        ram_in_bytes("lots")
    assert parse_signal("9") == parse_signal("KILL") == parse_signal("SIGKILL") == signal.SIGKILL
    assert parse_signal("term") == signal.SIGTERM
    for bad in ("SIGNOPE", "0", "999"):
        with pytest.raises(RuntimeErr):
            parse_signal(bad)
