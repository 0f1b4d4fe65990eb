"""One shim process and our connection to it, as containerd's runtime v2 `binary` and `shim`:
`start` runs `<binary> -namespace NS -address A -publish-binary P -id ID start` in the bundle
(runtime options as protobuf on its stdin, `TTRPC_ADDRESS` in its environment), reads the
socket address it prints, and connects; `delete` runs `… -bundle B delete` for a shim that is
gone; every call goes over ttrpc with the caller's `traceparent`."""

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
from typing import TypeVar

from google.protobuf import any_pb2, empty_pb2, message

from containerd_py.errdefs import BY_CODE, ContainerdError, NotFound, Unavailable
from containerd_py.runtime.bundle import Bundle
from shim.api.task.v2 import shim_pb2 as task
from shim.ttrpc.client import Client as TTRPCClient
from shim.ttrpc.errors import ClosedError, TTRPCError, code_name

log = logging.getLogger("containerd-py.shim")

TASK_SERVICE = "containerd.task.v2.Task"
START_TIMEOUT = 30.0
CALL_TIMEOUT = 30.0

M = TypeVar("M", bound=message.Message)


def binary_name(runtime: str) -> str:
    """containerd's rule: `io.containerd.runc.v2` → `containerd-shim-runc-v2`."""
    parts = runtime.split(".")
    if len(parts) < 2 or not all(parts[-2:]):
        raise ContainerdError(f'invalid runtime name {runtime}, correct runtime name should be '
                              'either format like `io.containerd.runc.v1` or a full path to '
                              'the binary')  # fmt: skip
    return f"containerd-shim-{parts[-2]}-{parts[-1]}"


def find_binary(runtime: str, runtime_path: str = "") -> str:
    """The shim to run: an explicit path, else the binary named for the runtime, on PATH or
    beside our own executable (as containerd also looks beside itself)."""
    if runtime_path:
        return runtime_path
    if os.path.isabs(runtime):
        return runtime
    name = binary_name(runtime)
    found = shutil.which(name)
    if not found:
        beside = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), name)
        found = beside if os.access(beside, os.X_OK) else None
    if not found:
        raise NotFound(f'runtime "{runtime}" binary not installed "{name}"')
    return found


# The codes containerd's errdefs.FromGRPC keeps; any other becomes UNKNOWN, as it does there.
_KEPT = {"INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "FAILED_PRECONDITION",
         "UNAVAILABLE", "UNIMPLEMENTED", "CANCELLED", "DEADLINE_EXCEEDED"}  # fmt: skip


def _error(e: TTRPCError) -> ContainerdError:
    name = code_name(e.code)
    cls = BY_CODE.get(name, ContainerdError) if name in _KEPT else ContainerdError
    if cls is not ContainerdError:
        return cls(e.message)
    code = name if name in _KEPT else "UNKNOWN"
    # FromGRPC wraps what it does not know in ErrUnknown, whose text ends the message.
    error = ContainerdError(f"{e.message}: unknown" if code == "UNKNOWN" else e.message)
    error.code = code
    return error


class Shim:
    def __init__(
        self, bundle: Bundle, binary: str, client: TTRPCClient, relay: "LogRelay | None"
    ) -> None:
        self.bundle = bundle
        self.binary = binary
        self.client = client
        self.relay = relay

    @property
    def id(self) -> str:
        return self.bundle.id

    def call(
        self,
        method: str,
        request: message.Message,
        response: type[M],
        traceparent: str | None = None,
        timeout: float | None = CALL_TIMEOUT,
    ) -> M:
        metadata = {"traceparent": traceparent} if traceparent else None
        try:
            data = self.client.call(
                TASK_SERVICE, method, request.SerializeToString(), timeout, metadata
            )
        except ClosedError as e:
            raise Unavailable(f"shim of {self.id}: {e.message}") from None
        except TTRPCError as e:
            raise _error(e) from None
        return response.FromString(data)

    def state(self, exec_id: str = "") -> task.StateResponse:
        return self.call(
            "State", task.StateRequest(id=self.id, exec_id=exec_id), task.StateResponse
        )

    def shutdown(self) -> None:
        """Ask the shim to exit; its closing the connection is the answer."""
        try:
            self.call("Shutdown", task.ShutdownRequest(id=self.id), empty_pb2.Empty, timeout=5)
        except ContainerdError:
            pass
        self.close()

    def close(self) -> None:
        self.client.close()
        if self.relay:
            self.relay.close()


class Launcher:
    """What every shim is started with: containerd-py's addresses and its publish binary."""

    def __init__(
        self, grpc_address: str, ttrpc_address: str, publish_binary: str, debug: bool
    ) -> None:
        self.grpc_address = grpc_address
        self.ttrpc_address = ttrpc_address
        self.publish_binary = publish_binary
        self.debug = debug

    def command(self, binary: str, bundle: Bundle, *args: str) -> list[str]:
        return [binary, "-namespace", bundle.namespace, "-address", self.grpc_address,
                "-publish-binary", self.publish_binary, "-id", bundle.id, *args]  # fmt: skip

    def env(self) -> dict[str, str]:
        return dict(os.environ, TTRPC_ADDRESS=self.ttrpc_address, GOMAXPROCS="2")

    def start(self, bundle: Bundle, binary: str, options: any_pb2.Any | None) -> Shim:
        relay = relay_log(bundle)
        try:
            return self._start(bundle, binary, options, relay)
        except BaseException:
            if relay:
                relay.close()
            raise

    def _start(
        self, bundle: Bundle, binary: str, options: any_pb2.Any | None, relay: "LogRelay | None"
    ) -> Shim:
        args = ["-debug", "start"] if self.debug else ["start"]
        try:
            done = subprocess.run(
                self.command(binary, bundle, *args),
                cwd=bundle.path,
                env=self.env(),
                input=options.SerializeToString() if options is not None else b"",
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=START_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ContainerdError(f"start shim {binary}: {e}") from None
        output = done.stdout.decode(errors="replace").strip()
        if done.returncode != 0:
            raise ContainerdError(f"{output}: exit status {done.returncode}")
        address = output.splitlines()[-1] if output else ""
        bundle.write("shim-binary-path", binary.encode())
        return Shim(bundle, binary, connect(address), relay)

    def load(self, bundle: Bundle) -> Shim:
        """Reconnect to a running shim through the address it left in the bundle."""
        binary = bundle.read("shim-binary-path")
        shim = Shim(bundle, binary, connect(bundle.read("address")), relay_log(bundle))
        try:
            shim.call("Connect", task.ConnectRequest(id=bundle.id), task.ConnectResponse, timeout=5)
        except BaseException:
            shim.close()
            raise
        return shim

    def delete(self, bundle: Bundle, binary: str) -> task.DeleteResponse:
        """Clean up after a shim that is gone: the shim binary's own `delete` kills and removes
        what is left of its container, and says how it ended."""
        try:
            done = subprocess.run(
                self.command(binary, bundle, "-bundle", bundle.path, "delete"),
                cwd=bundle.path,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=START_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ContainerdError(f"delete shim {binary}: {e}") from None
        if done.returncode != 0:
            raise ContainerdError(
                f"{done.stderr.decode(errors='replace').strip()}: exit status {done.returncode}"
            )
        if done.stderr:
            log.warning("cleanup warnings %s", done.stderr.decode(errors="replace").strip())
        return task.DeleteResponse.FromString(done.stdout)


def connect(address: str) -> TTRPCClient:
    path = address.removeprefix("unix://")
    if not path:
        raise ContainerdError("shim printed no address")
    try:
        return TTRPCClient.connect(path, timeout=10)
    except OSError as e:
        raise Unavailable(f"dial {address}: {e}") from None


class LogRelay:
    """The shim's `log` fifo copied into our log, as containerd copies it to its stderr.
    Opened read-write, so the shim's open never blocks or fails while we live; `close()` wakes
    the reader with a last newline and ends it."""

    def __init__(self, bundle: Bundle) -> None:
        self.prefix = f"shim {bundle.namespace}/{bundle.id}"
        self.fd = os.open(bundle.file("log"), os.O_RDWR | os.O_CLOEXEC)
        self.stopped = threading.Event()
        threading.Thread(target=self._copy, name=f"shim-log-{bundle.id}", daemon=True).start()

    def _copy(self) -> None:
        with open(self.fd, "rb", buffering=0, closefd=True) as f:
            for line in iter(f.readline, b""):
                if self.stopped.is_set():
                    return
                log.info("%s: %s", self.prefix, line.decode(errors="replace").rstrip())

    def close(self) -> None:
        if not self.stopped.is_set():
            self.stopped.set()
            with contextlib.suppress(OSError):
                os.write(self.fd, b"\n")


def relay_log(bundle: Bundle) -> LogRelay | None:
    try:
        return LogRelay(bundle)
    except OSError:
        return None  # no fifo (a bundle from elsewhere): the shim logs nowhere
