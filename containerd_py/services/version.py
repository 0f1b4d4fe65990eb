"""containerd.services.version.v1.Version and .introspection.v1.Introspection."""

import platform
from collections.abc import Sequence

from google.protobuf import empty_pb2

from containerd_py import VERSION
from containerd_py.api.services.introspection.v1 import introspection_pb2 as introspection
from containerd_py.api.services.version.v1 import version_pb2 as api
from containerd_py.api.types import platform_pb2
from containerd_py.filters import Adaptor, parse_all
from containerd_py.rpc import Call

REVISION = "stacklab"
_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class VersionService:
    def Version(self, request: empty_pb2.Empty, call: Call) -> api.VersionResponse:
        return api.VersionResponse(version=VERSION, revision=REVISION)


def host_platform() -> platform_pb2.Platform:
    machine = platform.machine()
    return platform_pb2.Platform(os="linux", architecture=_ARCH.get(machine, machine))


def _plugin_adaptor(plugin: introspection.Plugin) -> Adaptor:
    def adapt(path: Sequence[str]) -> tuple[str, bool]:
        field = path[0] if path else ""
        if field == "type":
            return plugin.type, True
        if field == "id":
            return plugin.id, True
        if field == "capabilities":
            return ",".join(plugin.capabilities), bool(plugin.capabilities)
        return "", False

    return adapt


class IntrospectionService:
    def __init__(self, plugins: list[introspection.Plugin], uuid: str) -> None:
        self.plugins = plugins
        self.uuid = uuid

    def Plugins(
        self, request: introspection.PluginsRequest, call: Call
    ) -> introspection.PluginsResponse:
        match = parse_all(*request.filters)
        selected = [p for p in self.plugins if match.match(_plugin_adaptor(p))]
        return introspection.PluginsResponse(plugins=selected)

    def Server(self, request: empty_pb2.Empty, call: Call) -> introspection.ServerResponse:
        return introspection.ServerResponse(uuid=self.uuid)
