"""Taking a container down (runc's `linuxContainer.Destroy` and `runc delete`): kill what is
left in its cgroup, remove the cgroup and the state directory, run the poststop hooks."""

import os
import time

from runc_py import cgroups
from runc_py.container import hooks
from runc_py.container.state import State
from runc_py.errors import RuntimeErr

SIGKILL = 9  # the `signal` module would cost every runc-py start its enums


def kill_all(st: State, sig: int) -> None:
    """Signal every process of the container: its cgroup's members, and the init itself."""
    pids: set[int] = set()
    if st.cgroup:
        mgr = cgroups.from_state(st.cgroup)
        try:
            if sig == SIGKILL and mgr.frozen():
                mgr.thaw()  # a frozen task never dies; runc thaws first too
            pids.update(mgr.pids())
        except (OSError, cgroups.CgroupError):
            pass
    if st.status_alive():
        pids.add(st.pid)
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def wait_gone(st: State, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    mgr = cgroups.from_state(st.cgroup) if st.cgroup else None
    while time.monotonic() < deadline:
        busy = st.status_alive()
        if not busy and mgr is not None:
            try:
                busy = bool(mgr.pids())
            except (OSError, cgroups.CgroupError):
                busy = False
        if not busy:
            return
        time.sleep(0.005)
    raise RuntimeErr(f"container {st.id}: processes did not exit after SIGKILL")


def remove_dir(d: str) -> None:
    """The state dir holds a few files and no subdirectories (shutil costs start-up time)."""
    try:
        for name in os.listdir(d):
            os.unlink(os.path.join(d, name))
        os.rmdir(d)
    except FileNotFoundError:
        pass


def destroy(root: str, st: State) -> None:
    kill_all(st, SIGKILL)
    wait_gone(st)
    if st.cgroup:
        try:
            cgroups.from_state(st.cgroup).destroy()
        except cgroups.CgroupError as e:
            raise RuntimeErr(f"container {st.id}: {e}") from None
    remove_dir(st.dir(root))
    hooks.run_warn("poststop", st.hooks.get("poststop"), st.oci_state(root, "stopped"))
