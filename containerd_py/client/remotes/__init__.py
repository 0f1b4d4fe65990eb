"""The registry side of pull and push: containerd's `remotes/docker` in Python.

with Resolver(hosts=configure_hosts("/etc/containerd/certs.d")) as resolver:
    name, desc = resolver.resolve("busybox")
    with resolver.fetcher(name).fetch(desc) as stream:
        manifest = stream.read()
"""

from .auth import Authorizer, Challenge, Credentials, parse_challenges
from .errors import AuthorizationFailed, UnexpectedStatus
from .fetcher import MAX_MANIFEST_SIZE, BlobStream, Fetcher, Progress
from .hosts import (
    PULL,
    PUSH,
    RESOLVE,
    RegistryHost,
    RegistryHosts,
    configure_hosts,
    host_directory,
    is_localhost,
    parse_hosts_toml,
)
from .pusher import Pusher, Readable
from .resolver import Resolver

__all__ = [
    "MAX_MANIFEST_SIZE",
    "PULL",
    "PUSH",
    "RESOLVE",
    "AuthorizationFailed",
    "Authorizer",
    "BlobStream",
    "Challenge",
    "Credentials",
    "Fetcher",
    "Progress",
    "Pusher",
    "Readable",
    "RegistryHost",
    "RegistryHosts",
    "Resolver",
    "UnexpectedStatus",
    "configure_hosts",
    "host_directory",
    "is_localhost",
    "parse_challenges",
    "parse_hosts_toml",
]
