"""What the init needs to know, worked out by `create` before the fork (runc sends the same
to its `runc init` as a netlink message and a JSON config over the init pipe; a fork copies it)."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from runc_py.cgroups import Manager


class Plan:
    """What the init needs to know, computed by `create` before the fork."""

    def __init__(
        self,
        *,
        id: str,
        bundle: str,
        rootfs: str,
        spec: dict[str, Any],
        fifo_fd: int,
        console_fd: int | None,
        no_pivot: bool,
        new_keyring: bool,
        preserve_fds: int,
        namespaces: dict[str, str | None],  # type -> path to join, or None to create
        cgroup: Manager,
    ) -> None:
        self.id, self.bundle, self.rootfs, self.spec = id, bundle, rootfs, spec
        self.fifo_fd, self.console_fd = fifo_fd, console_fd
        self.no_pivot, self.preserve_fds = no_pivot, preserve_fds
        self.new_keyring = new_keyring
        self.namespaces = namespaces
        self.cgroup = cgroup
