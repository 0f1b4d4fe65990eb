"""Regenerate the committed protobuf stubs: `python -m stacklab.protogen [DIR ...]`.

What `make protos` / `buf generate` does in containerd and ttrpc: every `.proto` under each
DIR (default: every one in the repo's layer packages) is compiled by protoc, from grpcio-tools,
into `<name>_pb2.py` beside it, with `<name>_pb2.pyi` type stubs from mypy-protobuf. The import
root is the repo root, so `shim/ttrpc/request.proto` becomes the module `shim.ttrpc.request_pb2`
and other protos import it as `import "shim/ttrpc/request.proto";`. Well-known types
(`google/protobuf/*.proto`) come from grpcio-tools and `google/rpc/*.proto` from
googleapis-common-protos, so the generated code imports those packages' own modules.

No gRPC service stubs are generated: the daemons that speak gRPC write their own servicers on
grpcio, and the shim speaks ttrpc (`shim.ttrpc`). A dev tool: needs the `dev` extras.

`--out ROOT` writes the tree somewhere else instead (the test that the committed stubs are
current regenerates into a temp dir and compares).
"""

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Where to look when no DIR is given: the layers' packages (not .venv, not tests).
DEFAULT_DIRS = ("stacklab", "runc_py", "engine", "containerd_py", "shim", "cri")


def find_protos(directory: str) -> list[str]:
    """Every .proto under `directory`, as paths relative to the repo root, sorted."""
    found = []
    top = os.path.join(REPO_ROOT, directory)
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
        for name in filenames:
            if name.endswith(".proto"):
                found.append(os.path.relpath(os.path.join(dirpath, name), REPO_ROOT))
    return sorted(found)


def _include_dirs() -> list[str]:
    import importlib.util

    import grpc_tools

    # google/protobuf/*.proto ship inside grpc_tools/_proto.
    includes = [REPO_ROOT, os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")]
    # google/rpc/status.proto ships beside googleapis-common-protos' google/rpc/status_pb2.py.
    spec = importlib.util.find_spec("google.rpc")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if os.path.exists(os.path.join(location, "status.proto")):
            includes.append(os.path.dirname(os.path.dirname(location)))
            break
    return includes


def _mypy_plugin() -> str:
    """protoc-gen-mypy from the same environment as this interpreter."""
    here = os.path.join(os.path.dirname(sys.executable), "protoc-gen-mypy")
    found = here if os.path.exists(here) else shutil.which("protoc-gen-mypy")
    if not found:
        raise SystemExit("protogen: protoc-gen-mypy not found (install the dev extras)")
    return found


def generate(protos: Sequence[str], out_root: str = REPO_ROOT) -> list[str]:
    """Compile `protos` (paths relative to the repo root) into `out_root`; return the files
    written, relative to `out_root`."""
    from grpc_tools import protoc

    if not protos:
        return []
    os.makedirs(out_root, exist_ok=True)
    args = ["grpc_tools.protoc"]
    args += [f"-I{d}" for d in _include_dirs()]
    args += [
        f"--plugin=protoc-gen-mypy={_mypy_plugin()}",
        f"--python_out={out_root}",
        f"--mypy_out={out_root}",
        *protos,
    ]
    # protoc resolves the files against the include dirs: run it from the repo root.
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        status = protoc.main(args)
    finally:
        os.chdir(cwd)
    if status != 0:
        raise SystemExit(f"protogen: protoc failed ({status}) on {' '.join(protos)}")
    written = []
    for proto in protos:
        stem = proto[: -len(".proto")]
        written += [stem + "_pb2.py", stem + "_pb2.pyi"]
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacklab.protogen", description=__doc__)
    parser.add_argument(
        "dirs", nargs="*", help="directories to search for .proto (default: every layer package)"
    )
    parser.add_argument("--out", default=REPO_ROOT, help="output root (default: the repo root)")
    opts = parser.parse_args(argv)
    default = [os.path.join(REPO_ROOT, d) for d in DEFAULT_DIRS]
    dirs = opts.dirs or [d for d in default if os.path.isdir(d)]
    protos: list[str] = []
    for d in dirs:
        protos += find_protos(os.path.relpath(os.path.abspath(d), REPO_ROOT))
    for path in generate(sorted(set(protos)), opts.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
