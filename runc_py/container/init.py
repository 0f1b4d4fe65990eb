"""The container's init, from fork to execve (runc's `nsexec.c` stages and
`standard_init_linux.go`): stage 1 joins and creates namespaces, then forks stage 2, which is
pid 1 of the new pid namespace. Stage 2 builds the rootfs, reports ready to `create`, and blocks
on the exec fifo until `start` opens it; only then does it exec the user's process.

Both stages are forks of `runc-py create`: they must end in execve or os._exit, never return.
"""

from __future__ import annotations

import os

from runc_py import log
from runc_py.container import hooks, process, rootfs
from runc_py.container import namespaces as ns
from runc_py.container.plan import Plan
from runc_py.container.sync import Channel
from runc_py.errors import describe
from runc_py.linux import libc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


def fail(ch: Channel, e: BaseException) -> NoReturn:
    """Report to the parent and exit. Never raise: an exception escaping a forked stage would
    unwind into the parent's code (and run its clean-up) in the child."""
    try:
        if log.is_debug():
            import traceback

            log.debug("".join(traceback.format_exception(e)))
        ch.send("error", msg=describe(e))
    finally:
        os._exit(1)


def join_namespaces(nss: dict[str, str | None], ch: Channel | None, maps: bool) -> None:
    """setns into every namespace given by path, and unshare the new ones (but cgroup, which
    must wait until the parent has moved us into the container's cgroup)."""
    for t in ns.JOIN_ORDER:
        if t not in nss:
            continue
        path = nss[t]
        if path:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                libc.setns(fd, ns.FLAGS[t])
            except OSError as e:
                raise OSError(
                    e.errno, f"failed to join {t} namespace {path}: {e.strerror}"
                ) from None
            finally:
                os.close(fd)
        elif t == "user":
            libc.unshare(ns.CLONE_NEWUSER)
            if ch is not None and maps:
                ch.send("userns")
                ch.expect("mapped")
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
    new = 0
    for t, path in nss.items():
        if not path and t not in ("user", "cgroup"):
            new |= ns.FLAGS[t]
    if new:
        libc.unshare(new)


def stage1(ch: Channel, plan: Plan) -> NoReturn:
    """Enter the container's cgroup, join and create its namespaces, and fork the init, which
    is born in all of them."""
    try:
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        proc = plan.spec.get("process") or {}
        start_hooks = (plan.spec.get("hooks") or {}).get("startContainer")
        process.preload(proc, (plan.spec.get("linux") or {}).get("seccomp"), bool(start_hooks))
        plan.cgroup.enter()
        join_namespaces(plan.namespaces, ch, maps=True)
        pid = os.fork()
        if pid == 0:
            stage2(ch, plan)
        ch.send("pid", pid=pid)
        os._exit(0)
    except BaseException as e:
        fail(ch, e)


def stage2(ch: Channel, plan: Plan) -> NoReturn:
    try:
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        libc.set_process_title(f"runc-py init {plan.id}")
        go = ch.expect("go")
        os.setsid()
        if plan.new_keyring:  # unless --no-new-keyring, like runc (named after the container)
            libc.join_session_keyring("_ses." + plan.id)
        spec, linux = plan.spec, plan.spec.get("linux") or {}
        proc = spec.get("process") or {}
        userns = "user" in plan.namespaces

        rootfs.prepare_root(linux.get("rootfsPropagation"))
        rootfs.bind_rootfs(plan.rootfs)
        cgroup_mounts = [(str(name), str(path)) for name, path in go["cgroup_mounts"]]
        for m in spec.get("mounts") or []:
            rootfs.mount_one(plan.rootfs, m, cgroup_mounts)
        if rootfs.needs_dev(spec):
            rootfs.create_devices(plan.rootfs, list(linux.get("devices") or []), userns)
            rootfs.setup_dev_symlinks(plan.rootfs)

        ch.send("hooks")  # the parent runs prestart and createRuntime hooks now
        ch.expect("hooks-done")
        if "cgroup" in plan.namespaces and not plan.namespaces["cgroup"]:
            libc.unshare(ns.CLONE_NEWCGROUP)  # only now are we in the container's cgroup
        state = {
            "ociVersion": spec.get("ociVersion", ""),
            "id": plan.id,
            "status": "creating",
            "pid": go["pid"],
            "bundle": plan.bundle,
            "annotations": spec.get("annotations") or {},
        }
        hooks.run("createContainer", (spec.get("hooks") or {}).get("createContainer"), state)

        if plan.no_pivot:
            rootfs.move_root(plan.rootfs)
        else:
            rootfs.pivot_root(plan.rootfs)
        if plan.console_fd is not None:
            from runc_py.container import console

            master, slave = console.open_pty()
            console.send_master(plan.console_fd, master, slave)
            os.close(master)
            console.become_tty(slave, mount_console=True)
        rootfs.finalize(list(spec.get("mounts") or []))
        if (spec.get("root") or {}).get("readonly"):
            rootfs.readonly_root()
        if spec.get("hostname"):
            if "uts" not in plan.namespaces:
                raise OSError("unable to set hostname without a private UTS namespace")
            libc.sethostname(spec["hostname"])
        if spec.get("domainname"):
            libc.setdomainname(spec["domainname"])
        rootfs.write_sysctl(linux.get("sysctl") or {})
        for p in linux.get("readonlyPaths") or []:
            rootfs.readonly_path(p)
        for p in linux.get("maskedPaths") or []:
            rootfs.mask_path(p)

        seccomp = linux.get("seccomp")
        path, args, env = process.finalize(proc, seccomp)
        ch.send("ready")
    except BaseException as e:
        fail(ch, e)
    ch.close()
    _wait_for_start_and_exec(
        plan, state, path, args, env, seccomp, bool(proc.get("noNewPrivileges"))
    )


def _wait_for_start_and_exec(
    plan: Plan,
    state: dict[str, Any],
    path: str,
    args: list[str],
    env: dict[str, str],
    seccomp: dict[str, Any] | None,
    nnp: bool,
) -> NoReturn:
    try:
        # Opening the fifo for writing blocks until `start` opens it for reading. It is
        # reopened through /proc because its host path is gone since pivot_root.
        fd = os.open(f"/proc/self/fd/{plan.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
        os.close(plan.fifo_fd)
        state["status"] = "created"
        hooks.run("startContainer", (plan.spec.get("hooks") or {}).get("startContainer"), state)
        process.exec_process(path, args, env, seccomp, nnp, plan.preserve_fds)
    except BaseException as e:
        try:
            os.write(2, f"runc-py init: {e}\n".encode())
        finally:
            os._exit(127)
    os._exit(127)
