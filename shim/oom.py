"""OOM notifications (containerd's pkg/oom/v1 watcher): on cgroup v1, an eventfd registered
through `cgroup.event_control` fires each time the container's memory cgroup meets the OOM
killer, and the shim publishes /tasks/oom. cgroup v2 hosts are not watched yet."""

from __future__ import annotations

import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def memory_cgroup(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if "memory" in controllers.split(","):
                    return "/sys/fs/cgroup/memory" + path
    except OSError:
        pass
    return None


def watch(pid: int, on_oom: Callable[[], None]) -> bool:
    """Call `on_oom` from a thread of its own at every OOM of `pid`'s memory cgroup; False
    where there is nothing to watch (no v1 memory controller)."""
    d = memory_cgroup(pid)
    if d is None or not os.path.exists(f"{d}/cgroup.event_control"):
        return False
    efd = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        ofd = os.open(f"{d}/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with open(f"{d}/cgroup.event_control", "w") as f:
                f.write(f"{efd} {ofd}")
        finally:
            os.close(ofd)  # the kernel holds its own reference now
    except OSError:
        os.close(efd)
        return False

    def wait() -> None:
        try:
            while True:
                os.eventfd_read(efd)
                if not os.path.exists(d):  # removing the cgroup fires the eventfd too
                    return
                on_oom()
        except OSError:
            pass
        finally:
            os.close(efd)

    threading.Thread(target=wait, name="oom", daemon=True).start()
    return True
