"""containerd_py.client: what the engine and CRI layers import, as Go programs import
containerd's client. It speaks containerd's gRPC API, so it works against containerd-py and
against a real containerd alike.

    from containerd_py.client import Client, Resolver, configure_hosts, pull

    with Client("/run/stacklab/containerd/containerd.sock", "default") as client:
        with Resolver(hosts=configure_hosts("/etc/containerd/certs.d")) as resolver:
            image = pull(client, "busybox", resolver=resolver)
"""

from containerd_py.client.archive import export_archive, import_archive
from containerd_py.client.client import Client
from containerd_py.client.pull import pull
from containerd_py.client.push import push
from containerd_py.client.remotes import Resolver, configure_hosts
from containerd_py.client.unpack import unpack

__all__ = [
    "Client",
    "Resolver",
    "configure_hosts",
    "export_archive",
    "import_archive",
    "pull",
    "push",
    "unpack",
]
