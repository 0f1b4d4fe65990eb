"""ttrpc in plain Python: the small RPC that containerd speaks to its shims.

Stands for containerd/ttrpc (github.com/containerd/ttrpc): gRPC's protobuf messages and status
codes without gRPC's HTTP/2 — a 10-byte frame header (length, stream id, type, flags) and the
`ttrpc.Request` / `ttrpc.Response` envelope of request.proto. The modules are named for ttrpc's
files: `framing` (channel.go), `server` (server.go, services.go), `client` (client.go), `errors`
(errors.go). The shim serves with `Server`; containerd-py calls shims with `Client`.
"""

from shim.ttrpc.client import Client
from shim.ttrpc.errors import ClosedError, Code, DeadlineExceeded, TTRPCError
from shim.ttrpc.framing import MESSAGE_LENGTH_MAX
from shim.ttrpc.server import Context, Handler, Server, listen

__all__ = [
    "MESSAGE_LENGTH_MAX",
    "Client",
    "ClosedError",
    "Code",
    "Context",
    "DeadlineExceeded",
    "Handler",
    "Server",
    "TTRPCError",
    "listen",
]
