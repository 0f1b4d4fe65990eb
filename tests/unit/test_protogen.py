"""The committed _pb2 stubs are what `python -m stacklab.protogen` makes of the .proto files."""

import os
import pathlib

import pytest

from stacklab import protogen


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_committed_stubs_are_current(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("grpc_tools", reason="needs the dev extras (grpcio-tools)")
    protos = [p for d in protogen.DEFAULT_DIRS for p in protogen.find_protos(d)]
    assert "shim/ttrpc/request.proto" in protos
    written = protogen.generate(protos, str(tmp_path))
    stale = []
    for rel in written:
        committed = os.path.join(protogen.REPO_ROOT, rel)
        if not os.path.exists(committed) or _read(committed) != _read(os.path.join(tmp_path, rel)):
            stale.append(rel)
    assert not stale, f"stale generated stubs {stale}: run python -m stacklab.protogen"
