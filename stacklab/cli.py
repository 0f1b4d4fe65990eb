"""The `stacklab` command: the stack as a whole. For now `demo` (the README's main job: one
container through runc-py, then through containerd-py, a shim and runc-py, with its trace and
process tree) and `trace`; eras, up/down and compare arrive with the layers above."""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from stacklab import paths, trace, tracing

DEMO_SCRIPT = (
    'echo "  hostname:      $(hostname)"; '
    'echo "  pid namespace: $(readlink /proc/self/ns/pid)   (my pid is $$)"; '
    'echo "  processes:"; ps -o pid,comm | sed "s/^/    /"; '
    'echo "  mounts:"; '
    'awk \'{print "    " $5 "  " $(NF-2) "  " $6}\' /proc/self/mountinfo; '
    "exec sleep 1"
)


def _runc_py() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "runc-py")
    return here if os.path.exists(here) else "runc-py"


def _pstree(pid: int) -> str:
    try:
        return subprocess.run(
            ["pstree", "-p", "-a", "-T", str(pid)], capture_output=True, text=True, check=False
        ).stdout.rstrip()
    except FileNotFoundError:
        return "(pstree not installed: apt-get install psmisc)"


def _become_subreaper() -> None:
    import ctypes

    pr_set_child_subreaper = 36  # linux/prctl.h
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def demo(args: argparse.Namespace) -> int:
    from stacklab.testimage import build_bundle

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # interleave with children
    bundle = Path(paths.state_root()) / "demo" / "bundle"
    if not (bundle / "rootfs" / "bin" / "busybox").exists():
        print(f"building the busybox test image and bundle in {bundle}")
        shutil.rmtree(bundle, ignore_errors=True)
        build_bundle(bundle, args=["sh", "-c", DEMO_SCRIPT])
    cid = f"demo-{os.getpid()}"
    runc = [_runc_py(), "--root", paths.runc_root()]
    # The container's init is reparented to us once `runc-py create` exits, as it would be
    # to a shim: we can show it in pstree and reap it.
    _become_subreaper()
    try:
        with tracing.span("stacklab demo", "stacklab", attrs={"id": cid}) as root:
            _demo_run(runc, bundle, cid, root.traceparent)
            _demo_chain(bundle, f"{cid}-chain", root.traceparent)
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"stacklab demo: {e}", file=sys.stderr)
        return 1
    finally:  # whatever happened, leave no container behind
        subprocess.run([*runc, "delete", "--force", cid], capture_output=True, check=False)
    print(f"\nthe trace of this run ({paths.trace_file()}):")
    print(trace.show(root.context.trace_id))
    return 0


def _demo_run(runc: list[str], bundle: Path, cid: str, traceparent: str) -> None:
    env = dict(os.environ, TRACEPARENT=traceparent)
    pid_file = Path(paths.runtime_root()) / f"{cid}.pid"
    print(f"$ runc-py create --bundle {bundle} --pid-file {pid_file} {cid}")
    subprocess.run(
        [*runc, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), cid],
        env=env,
        check=True,
    )
    pid = int(pid_file.read_text())
    pid_file.unlink()
    print(f"\nthe init, blocked on its exec fifo (pid {pid} on the host):")
    print(_pstree(os.getpid()))
    print(f"\n$ runc-py start {cid}     (the container prints:)")
    subprocess.run([*runc, "start", cid], env=env, check=True)
    _wait_for_sleep(pid)
    print("\nthe running container's process tree:")
    print(_pstree(os.getpid()))
    _, status = os.waitpid(pid, 0)
    print(f"\ncontainer exited with status {os.waitstatus_to_exitcode(status)}")
    print(f"$ runc-py delete {cid}")
    subprocess.run([*runc, "delete", cid], env=env, check=True)


def _wait_for_sleep(pid: int) -> None:
    """Until the container's init has exec'd the script's final `sleep` (or exited)."""
    for _ in range(300):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sleep":
                return
        except OSError:
            return
        time.sleep(0.01)


def _demo_chain(bundle: Path, cid: str, traceparent: str) -> None:
    from stacklab import chain_demo

    print("\n--- the same container through containerd-py -> shim -> runc-py (Docker 1.11) ---")
    print("$ containerd-py --root … --state … --address " + paths.containerd_socket())
    daemon = chain_demo.start_daemon()
    try:

        def show_tree(pid: int) -> None:
            _wait_for_sleep(pid)
            print(_pstree(os.getpid()))

        status = chain_demo.run(bundle, cid, traceparent, show_tree)
        print(f"\ncontainer exited with status {status}; task, container and snapshot removed")
    finally:
        chain_demo.stop_daemon(daemon)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="stacklab", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="run a container through the stack, show its trace and tree")
    d.set_defaults(func=demo)
    t = sub.add_parser("trace", help="show one trace as a call tree (default: the last)")
    t.add_argument("trace_id", nargs="?")
    t.set_defaults(func=lambda a: print(trace.show(a.trace_id)) or 0)
    args = p.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
