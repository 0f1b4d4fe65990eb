"""`create`, the parent's side (runc's `linuxContainer.Start` + `initProcess.start`): read the
bundle, fork the init, put it in its cgroup, run the runtime hooks, and return once the init is
blocked on the exec fifo. On any failure it takes everything back: process, cgroup, state dir.
"""

from __future__ import annotations

import os

from runc_py import cgroups
from runc_py.container import hooks
from runc_py.container import namespaces as ns
from runc_py.container.destroy import SIGKILL, remove_dir
from runc_py.container.plan import Plan
from runc_py.container.state import EXEC_FIFO, State, proc_start_time, validate_id
from runc_py.container.sync import Channel, fork_stage
from runc_py.errors import RuntimeErr
from stacklab import jsonfast

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

# The device rules runc appends to every container's own (specconv.AllowedDevices): mknod of
# anything, and use of the default devices and of ptys.
ALLOWED_DEVICES: list[dict[str, Any]] = [
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *(
        {"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
        for ma, mi in ((1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 2))
    ),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]


def resources(linux: dict[str, Any]) -> dict[str, Any]:
    res = dict(linux.get("resources") or {})
    res["devices"] = [*(res.get("devices") or []), *ALLOWED_DEVICES]
    return res


def load_spec(bundle: str) -> dict[str, Any]:
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            spec = jsonfast.loads(f.read())
    except FileNotFoundError:
        raise RuntimeErr(f"open {bundle}/config.json: no such file or directory") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RuntimeErr(f"failed to parse config.json: {e}") from None
    if not isinstance(spec, dict):
        raise RuntimeErr("failed to parse config.json: not a JSON object")
    return spec


def validate(spec: dict[str, Any], rootfs: str) -> dict[str, str | None]:
    """The checks runc's `validate` package does before anything is touched; returns the
    namespaces to create (None) or join (path)."""
    if not os.path.isdir(rootfs):
        raise RuntimeErr(f"rootfs ({rootfs}) does not exist")
    proc = spec.get("process")
    if not isinstance(proc, dict) or not proc.get("args"):
        raise RuntimeErr("process.args must not be empty")
    linux = spec.get("linux") or {}
    nss: dict[str, str | None] = {}
    for entry in linux.get("namespaces") or []:
        t = entry.get("type") if isinstance(entry, dict) else None
        if not isinstance(t, str) or t not in ns.FLAGS:
            raise RuntimeErr(f"unknown namespace type {t!r}")
        if t in nss:
            raise RuntimeErr(f"duplicate namespace type {t!r}")
        path = entry.get("path") or None
        if path and not os.path.exists(path):
            raise RuntimeErr(f"namespace {t} path {path} does not exist")
        nss[t] = path
    if "user" in nss and not nss["user"] and not linux.get("uidMappings"):
        raise RuntimeErr("user namespaces enabled, but no uid mappings found")
    if linux.get("uidMappings") and "user" not in nss:
        raise RuntimeErr("user namespaces not enabled in config, but uid mappings given")
    if spec.get("hostname") and "uts" not in nss:
        raise RuntimeErr("unable to set hostname without a private UTS namespace")
    check_sysctl(linux.get("sysctl") or {}, nss)
    hooks.check(spec.get("hooks"))
    return nss


# sysctls of the ipc namespace (runc's validate.sysctl), and prefixes of whole namespaces'
IPC_SYSCTLS = {
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
}


def check_sysctl(sysctl: dict[str, str], nss: dict[str, str | None]) -> None:
    """Only sysctls of a namespace the container has of its own: anything else would be
    written to the host's kernel (runc's validate.sysctl)."""
    for key in sysctl:
        if "/" in key or ".." in key or not key:
            raise RuntimeErr(f"invalid sysctl {key!r}")
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if "ipc" in nss:
                continue
            raise RuntimeErr(f"sysctl {key!r} is not allowed in the hosts ipc namespace")
        if key.startswith("net."):
            if "network" in nss:
                continue
            raise RuntimeErr(f"sysctl {key!r} is not allowed in the hosts network namespace")
        if "uts" in nss and key == "kernel.domainname":
            continue
        if "uts" in nss and key == "kernel.hostname":
            raise RuntimeErr(
                f'sysctl {key!r} is not allowed as it conflicts with the OCI "hostname" field'
            )
        raise RuntimeErr(f"sysctl {key!r} is not in a separate kernel namespace")


def _write_maps(pid: int, linux: dict[str, Any]) -> None:
    for kind in ("uid", "gid"):
        lines = "".join(
            f"{m['containerID']} {m['hostID']} {m['size']}\n"
            for m in linux.get(f"{kind}Mappings") or []
        )
        with open(f"/proc/{pid}/{kind}_map", "w") as f:
            f.write(lines)


def write_pid_file(path: str, pid: int) -> None:
    """Atomically, like runc: a reader (the shim) never sees an empty pid file."""
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def create(
    root: str,
    cid: str,
    bundle: str,
    *,
    pid_file: str | None = None,
    console_socket: str | None = None,
    no_pivot: bool = False,
    new_keyring: bool = True,
    preserve_fds: int = 0,
    detach: bool = True,
    console_fd: int | None = None,
) -> State:
    """`console_fd`: a connected socket for the pty master, instead of `console_socket` (runc-py
    `run` relaying the terminal itself); create closes it once the init has used it."""
    validate_id(cid)
    bundle = os.path.abspath(bundle)
    # paths the caller gave relative to where it stands, before we stand in the bundle
    pid_file = os.path.abspath(pid_file) if pid_file else None
    console_socket = os.path.abspath(console_socket) if console_socket else None
    try:
        os.chdir(bundle)  # like runc: relative mount sources and hooks start from the bundle
    except OSError as e:
        raise RuntimeErr(f"chdir {bundle}: {(e.strerror or str(e)).lower()}") from None
    spec = load_spec(bundle)
    root_path = (spec.get("root") or {}).get("path") or "rootfs"
    rootfs = os.path.realpath(os.path.join(bundle, root_path))
    nss = validate(spec, rootfs)
    linux = spec.get("linux") or {}
    proc = spec["process"]
    if proc.get("terminal") and not console_socket and detach:
        raise RuntimeErr("cannot allocate tty if runc will detach without setting console socket")
    if not proc.get("terminal") and console_socket:
        raise RuntimeErr("cannot use console socket if runc will not detach or allocate tty")

    os.makedirs(root, 0o711, exist_ok=True)
    cdir = os.path.join(root, cid)
    try:
        os.mkdir(cdir, 0o711)
    except FileExistsError:
        raise RuntimeErr("container with given ID already exists") from None

    pid = 0
    manager: cgroups.Manager | None = None
    try:
        fifo = os.path.join(cdir, EXEC_FIFO)
        old = os.umask(0)
        try:
            os.mkfifo(fifo, 0o622)
        finally:
            os.umask(old)
        try:
            manager = cgroups.new_manager(linux.get("cgroupsPath"), cid)
            manager.apply(-1)
            manager.set(resources(linux))
        except cgroups.CgroupError as e:
            raise RuntimeErr(str(e)) from None
        if console_socket:
            from runc_py.container import console

            console_fd = console.connect(console_socket)
        fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        plan = Plan(
            id=cid,
            bundle=bundle,
            rootfs=rootfs,
            spec=spec,
            fifo_fd=fifo_fd,
            console_fd=console_fd,
            no_pivot=no_pivot,
            new_keyring=new_keyring,
            preserve_fds=preserve_fds,
            namespaces=nss,
            cgroup=manager,
        )
        stage1, parent = fork_stage(lambda ch: _stage1(ch, plan))
        try:
            msg = parent.recv()
            if msg["t"] == "userns":
                _write_maps(stage1, linux)
                parent.send("mapped")
                msg = parent.recv()
        except EOFError:
            raise RuntimeErr("container init exited before it was ready") from None
        finally:
            os.waitpid(stage1, 0)
        if msg["t"] == "error":
            raise RuntimeErr(str(msg["msg"]))
        pid = int(msg["pid"])
        state = State(
            id=cid,
            pid=pid,
            pid_start=proc_start_time(pid) or 0,
            bundle=bundle,
            rootfs=rootfs,
            created_ns=0,
            annotations=dict(spec.get("annotations") or {}),
            namespaces={t: f"/proc/{pid}/ns/{ns.FILES[t]}" for t in nss},
            hooks={
                k: v for k, v in (spec.get("hooks") or {}).items() if k in ("poststart", "poststop")
            },
            process=proc,
            seccomp=linux.get("seccomp"),
            creating=True,
        )
        import time

        state.created_ns = time.time_ns()
        state.cgroup = manager.to_state()
        parent.send("go", pid=pid, cgroup_mounts=manager.container_mounts())
        state.save(root)
        parent.expect("hooks")
        spec_hooks = spec.get("hooks") or {}
        oci = state.oci_state(root, "creating")
        hooks.run("prestart", spec_hooks.get("prestart"), oci)
        hooks.run("createRuntime", spec_hooks.get("createRuntime"), oci)
        parent.send("hooks-done")
        parent.expect("ready")
        parent.close()
        os.close(fifo_fd)
        if console_fd is not None:
            os.close(console_fd)
        state.creating = False
        state.save(root)
        if pid_file:
            write_pid_file(pid_file, pid)
        return state
    except BaseException:
        _undo(cdir, pid, manager)
        raise


def _stage1(ch: Channel, plan: Plan) -> NoReturn:
    """The forked child. It imports the init's code itself, so that none of it slows down
    the commands that fork no init (start, state, kill, delete)."""
    try:
        from runc_py.container import init
    except BaseException as e:
        ch.send("error", msg=f"runc-py init: {e}")
        os._exit(1)
    init.stage1(ch, plan)


def _undo(cdir: str, pid: int, manager: cgroups.Manager | None) -> None:
    if pid:
        try:
            os.kill(pid, SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
    if manager is not None:
        try:
            for p in manager.pids():
                os.kill(p, SIGKILL)
            manager.destroy()
        except (OSError, cgroups.CgroupError):
            pass
    remove_dir(cdir)
