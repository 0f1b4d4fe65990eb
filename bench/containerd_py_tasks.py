#!/usr/bin/env python3
"""`ctr run` on containerd-py against real containerd, in the same run, with the same shim and
runtime under both, and both daemons' RSS idle and with 50 containers running.

Two daemons (the interop tests' own: temp roots, debug log level, busybox imported into each)
and two shim + runtime pairs:

- `runc-v2`:  the real `containerd-shim-runc-v2` driving the real `runc`
              (`--runtime io.containerd.runc.v2`, no `--runc-binary`);
- `runpy-v2`: our `containerd-shim-runpy-v2` driving `runc-py` (`--runtime io.containerd.runpy.v2`).

`ctr run --rm IMAGE ID true` is timed with `time.perf_counter` around `subprocess.run`, in this
process, one run per (daemon, runtime) in turn, the order reversed every round, a fresh container
id every run; a run starts once the last one's background processes (event publishers, shim
`delete`s) have exited, and how long they ran on is reported. containerd-py's own spans (`trace/spans.jsonl`) inside each run's window give the
per-RPC breakdown. Then `--containers` sleeping containers (our shim + runc-py) are started on
each daemon, the daemons' and shims' VmRSS and PSS are read, everything is removed with `ctr task
kill`, `task rm` and `c rm`, and the bench checks that nothing is left. Needs root. Writes
bench/results/containerd_py_tasks.json; removes every daemon, shim, mount, cgroup and temp dir it
made, on success, failure, Ctrl-C and SIGTERM.

    sudo .venv/bin/python bench/containerd_py_tasks.py [--rounds 3] [--runs 10] [--containers 50]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Run as a script, this file's own directory comes first on sys.path, and bench/containerd_py.py
# would shadow the containerd_py package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "interop")]

from containerd import Containerd, start_containerd  # noqa: E402
from containerd_py_daemon import ContainerdPy, start_containerd_py  # noqa: E402

from stacklab import testimage  # noqa: E402

DAEMONS = ("py", "go")
LABELS = {"py": "containerd-py", "go": "containerd"}
RUNTIMES = {"runc-v2": "io.containerd.runc.v2", "runpy-v2": "io.containerd.runpy.v2"}
RUNTIME_LABELS = {
    "runc-v2": "containerd-shim-runc-v2 + runc",
    "runpy-v2": "containerd-shim-runpy-v2 + runc-py",
}
TARGET = 1.5
QUIET_TIMEOUT = 20.0  # seconds for one run's background processes to finish
CLEAN_TIMEOUT = 60.0  # seconds for both daemons to be clean after the removal


@dataclass
class Sample:
    daemon: str
    runtime: str
    cid: str
    seconds: float
    start_ns: int
    end_ns: int
    tail: float  # seconds after `ctr` returned until the run's background processes were gone


@dataclass
class Daemon:
    """One daemon as the bench drives it. `view` is the interop fixture's `Containerd` helper,
    for containerd-py a view on its directory (the same layout: `containerd.sock`, `state/`),
    so that both daemons get the same `ctr` calls, reset and leftover checks."""

    name: str
    view: Containerd
    pid: int
    stack_root: Path  # STACKLAB_ROOT of its shims: their spans, our shim's sockets and runc root

    def argv(self, runtime: str, cid: str, *cmd: str, flags: tuple[str, ...]) -> list[str]:
        self.view.ids.add(cid)
        return ["run", "--runtime", RUNTIMES[runtime],
                "--runc-root", str(self.view.dir / "runc"), "--fifo-dir", str(self.view.dir / "fifo"),
                *flags, self.view.image, cid, *cmd]  # fmt: skip

    def run(self, runtime: str, cid: str, *cmd: str, flags: tuple[str, ...] = ("--rm",)) -> None:
        proc = self.view.ctr(*self.argv(runtime, cid, *cmd, flags=flags))
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: ctr run {runtime} {cid}: {proc.stderr.strip()}")

    def _argvs(self) -> Iterator[tuple[int, list[bytes]]]:
        """Every live process whose command line names this daemon's socket: its shims
        (`-address S`) and what they run (`containerd --address S publish`, `shim … delete`)."""
        needle = str(self.view.socket).encode()
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    cmdline = Path("/proc", entry, "cmdline").read_bytes()
                    if needle in cmdline:  # a zombie's is empty: it has exited
                        yield int(entry), cmdline.rstrip(b"\0").split(b"\0")

    def shims(self) -> list[int]:
        return [pid for pid, argv in self._argvs() if b"containerd-shim" in b" ".join(argv)]

    def background(self) -> list[int]:
        """The processes a container run may leave running after `ctr` returns: event
        publishers (a process per event when a shim falls back to `-publish-binary`) and shim
        `delete` clean-ups."""
        return [pid for pid, argv in self._argvs() if b"publish" in argv or argv[-1] == b"delete"]

    def spans(self) -> list[dict[str, Any]]:
        path = self.stack_root / "trace" / "spans.jsonl"
        if not path.exists():
            return []
        with path.open() as f:
            return [json.loads(line) for line in f if line.strip()]


@dataclass
class Bench:
    work: Path
    daemons: dict[str, Daemon]
    samples: list[Sample] = field(default_factory=list)
    n: int = 0

    def fresh_id(self, daemon: str, runtime: str) -> str:
        self.n += 1
        return f"b{os.getpid()}-{daemon}-{runtime}-{self.n}"

    def quiet(self, timeout: float = QUIET_TIMEOUT) -> None:
        """Until no daemon has background work from an earlier run: on 2 CPUs a run that
        overlaps the last one's publishers (`containerd-py publish` is ~0.1 s of CPU) would pay
        for them, and the alternation would hand that cost to the other daemon."""
        deadline = time.monotonic() + timeout
        while any(d.background() for d in self.daemons.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("background processes did not finish")
            time.sleep(0.005)

    def run_once(self, daemon: str, runtime: str, timed: bool) -> None:
        d = self.daemons[daemon]
        cid = self.fresh_id(daemon, runtime)
        argv = d.view.command(*d.argv(runtime, cid, "true", flags=("--rm",)))
        self.quiet()
        start_ns, t0 = time.time_ns(), time.perf_counter()
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        seconds, end_ns = time.perf_counter() - t0, time.time_ns()
        if proc.returncode != 0:
            raise RuntimeError(f"{daemon}: ctr run {runtime} {cid}: {proc.stderr.decode().strip()}")
        self.quiet()
        tail = time.perf_counter() - t0 - seconds
        if timed:
            self.samples.append(Sample(daemon, runtime, cid, seconds, start_ns, end_ns, tail))

    def times(self, daemon: str, runtime: str) -> list[float]:
        return [s.seconds for s in self.samples if (s.daemon, s.runtime) == (daemon, runtime)]

    def tails(self, daemon: str, runtime: str) -> list[float]:
        return [s.tail for s in self.samples if (s.daemon, s.runtime) == (daemon, runtime)]


# -- memory -----------------------------------------------------------------------------------


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split among the processes that map them, which is
    what 50 Python shims sharing one interpreter's text really cost."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def memory(pid: int) -> dict[str, int]:
    return {
        "rss_kib": status_kib(pid, "VmRSS"),
        "pss_kib": pss_kib(pid),
        "threads": status_kib(pid, "Threads"),
    }


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def shim_memory(d: Daemon, prefix: str) -> list[dict[str, int]]:
    """VmRSS and PSS of the shim of every running task whose id starts with `prefix`: the
    parent of the container's pid 1 (both shims are subreapers of their containers)."""
    out = []
    for cid, (pid, status) in sorted(d.view.task_rows().items()):
        if cid.startswith(prefix) and status == "RUNNING":
            out.append(memory(parent(pid)))
    return out


def settle(seconds: float = 1.0) -> None:
    """Let the event publishers and shim start-ups of the last container finish."""
    time.sleep(seconds)


def start_many(bench: Bench, runtime: str, count: int, tag: str) -> None:
    """`ctr run -d … sleep 1000`, `count` times per daemon, alternating daemons."""
    for i in range(count):
        for name in DAEMONS if i % 2 == 0 else reversed(DAEMONS):
            d = bench.daemons[name]
            d.run(runtime, f"{tag}-{name}-{i}", "sleep", "1000", flags=("-d",))


def remove_all(d: Daemon) -> float:
    """kill, task rm, c rm for every container of the daemon's namespace; the seconds it took."""
    t0 = time.perf_counter()
    ctr = d.view.ctr
    tasks = d.view.tasks()
    for cid in tasks:
        ctr("task", "kill", "-s", "KILL", cid)
    deadline = time.monotonic() + 30
    while any(s != "STOPPED" for s in d.view.tasks().values()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{d.name}: tasks not stopped: {d.view.tasks()}")
        time.sleep(0.05)
    for cid in tasks:
        if (proc := ctr("task", "rm", cid)).returncode != 0:
            raise RuntimeError(f"{d.name}: task rm {cid}: {proc.stderr.strip()}")
    for cid in d.view.ctr("containers", "ls", "-q").stdout.split():
        if (proc := ctr("containers", "rm", cid)).returncode != 0:
            raise RuntimeError(f"{d.name}: c rm {cid}: {proc.stderr.strip()}")
    return time.perf_counter() - t0


def leftovers(d: Daemon) -> list[str]:
    """What the fixture's own check finds, plus active snapshots and what our shim keeps under
    its STACKLAB_ROOT (its sockets when the path is short enough, runc-py's state)."""
    found = d.view.leftovers()
    active = [line.split()[0] for line in d.view.ctr("snapshots", "ls").stdout.splitlines()[1:]
              if line.split()[-1:] == ["Active"]]  # fmt: skip
    if active:
        found.append(f"active snapshots: {active}")
    for sub in (Path("containerd") / "s", Path("runc") / d.view.namespace):
        top = d.stack_root / sub
        if top.is_dir() and (names := os.listdir(top)):
            found.append(f"{top}: {names}")
    return found


def wait_clean(ds: dict[str, Daemon]) -> dict[str, float]:
    """Seconds until every shim of each daemon has exited, then the full leftover check, or
    fail. A shim exits a moment after `task rm`, but the real runc-v2 shim first hands over its
    queued events, retrying with growing delays while nobody takes them; so this allows far
    more than the fixture's own 5 s, and says how long each daemon took."""
    t0 = time.perf_counter()
    gone: dict[str, float] = {}
    while len(gone) < len(ds):
        for n, d in ds.items():
            if n not in gone and not d.shims():
                gone[n] = time.perf_counter() - t0
        if time.perf_counter() - t0 > CLEAN_TIMEOUT:
            alive = {d.name: d.shims() for n, d in ds.items() if n not in gone}
            raise RuntimeError(f"shims alive {CLEAN_TIMEOUT:.0f} s after task rm: {alive}")
        time.sleep(0.1)
    for d in ds.values():
        if left := leftovers(d):
            raise RuntimeError(f"{d.name}: left after removing: {'; '.join(left)}")
    return gone


# -- setup ------------------------------------------------------------------------------------


def import_image(cdpy: ContainerdPy, work: Path, namespace: str) -> str:
    """The busybox test image into containerd-py, as the containerd fixture imports it."""
    info = testimage.build_image_layout(work / "layout")
    archive = work / "busybox.oci.tar"
    testimage.write_oci_archive(info.layout, archive)
    proc = cdpy.ctr("images", "import", str(archive), namespace=namespace, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"containerd-py: ctr images import: {proc.stderr.strip()}")
    return info.ref


@contextlib.contextmanager
def setup(work: Path) -> Iterator[Bench]:
    tempfile.tempdir = str(work)  # the containerd fixture's temp dir goes under `work` too
    # Our shim and runc-py under the real containerd keep their spans, sockets and state here
    # instead of /run/stacklab; containerd passes its environment on to the shims it starts.
    go_stack = work / "go-stack"
    os.environ["STACKLAB_ROOT"] = str(go_stack)
    with contextlib.ExitStack() as stack:
        cd = stack.enter_context(start_containerd(namespace=f"bench-run-go-{os.getpid()}"))
        cdpy = stack.enter_context(start_containerd_py(work / "py"))
        (cdpy.dir / "fifo").mkdir()
        ns_py = f"bench-run-py-{os.getpid()}"
        ref = import_image(cdpy, work, ns_py)
        assert ref == cd.image
        view = Containerd(cdpy.dir, ns_py, ref, cdpy.proc)
        # Runs before the containerd-py fixture's own teardown: kills and removes what is left
        # (tasks, containers, shims, mounts, cgroups), as it does for the real containerd.
        stack.callback(view.stop)
        daemons = {
            "py": Daemon("containerd-py", view, cdpy.proc.pid, cdpy.dir),
            "go": Daemon("containerd", cd, cd.proc.pid, go_stack),
        }
        yield Bench(work, daemons)


# -- report -----------------------------------------------------------------------------------


def _median_ms(values: list[float]) -> float | None:
    return statistics.median(values) * 1000 if values else None


def union_ns(intervals: list[tuple[int, int]]) -> int:
    total, end = 0, 0
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def breakdown(bench: Bench, key: str) -> dict[str, dict[str, float | None]]:
    """Per runtime, the median ms of each span name (`layer: name`, summed within a run) inside
    each timed run on daemon `key`, and `daemon busy`: the union of containerd-py's RPC spans;
    the rest of a run is `ctr` itself, gRPC to and fro, and the gaps between the calls. On the
    real containerd only our shim's and runc-py's spans exist."""
    recorded = bench.daemons[key].spans()
    out: dict[str, dict[str, float | None]] = {}
    for runtime in RUNTIMES:
        per: dict[str, list[float]] = {}
        for s in bench.samples:
            if (s.daemon, s.runtime) != (key, runtime):
                continue
            inside = [
                x for x in recorded if s.start_ns <= x["start_ns"] and x["end_ns"] <= s.end_ns
            ]
            sums: dict[str, float] = {}
            for x in inside:
                name = f"{x['layer']}: {x['name']}"
                sums[name] = sums.get(name, 0.0) + (x["end_ns"] - x["start_ns"]) / 1e9
            rpcs = [(x["start_ns"], x["end_ns"]) for x in inside if x["layer"] == "containerd-py"]
            if rpcs:
                sums["daemon busy (union of its RPCs)"] = union_ns(rpcs) / 1e9
            sums["total (ctr run)"] = s.seconds
            for name, value in sums.items():
                per.setdefault(name, []).append(value)
        out[runtime] = {name: _median_ms(v) for name, v in sorted(per.items())}
    return out


def git(*args: str) -> str:
    """What the figures were measured on (read only)."""
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return proc.stdout.strip()


def report(bench: Bench, args: argparse.Namespace, mem: dict[str, Any]) -> dict[str, Any]:
    med = {rt: {name: _median_ms(bench.times(name, rt)) for name in DAEMONS} for rt in RUNTIMES}
    ratios = {rt: (m["py"] or 0) / (m["go"] or 1) for rt, m in med.items()}
    tails = {rt: {name: _median_ms(bench.tails(name, rt)) for name in DAEMONS} for rt in RUNTIMES}
    summary: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "timing": "time.perf_counter around subprocess.run(ctr ...), in the bench's process",
        "rounds": args.rounds,
        "runs": args.runs,
        "warmup": args.warmup,
        "ctr_run_rm_true_median_ms": med,
        "ratio_containerd_py_to_containerd": ratios,
        "background_after_ctr_median_ms": tails,
        "samples_ms": {
            rt: {name: [t * 1000 for t in bench.times(name, rt)] for name in DAEMONS}
            for rt in RUNTIMES
        },
        "breakdown_median_ms": {name: breakdown(bench, name) for name in bench.daemons},
        "memory": mem,
        "containerd": subprocess.run(
            ["containerd", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        # Other work on the host shows here: the figures of a busy host are not comparable.
        "loadavg_start_end": [args.loadavg, os.getloadavg()],
        "commit": git("rev-parse", "HEAD"),
        "uncommitted": git("status", "--porcelain", "--untracked-files=no").splitlines(),
    }
    print(f"\nctr run --rm IMAGE ID true: {args.rounds} rounds x {args.runs} runs, median ms")
    print(f"{'shim + runtime':38} {'containerd-py':>13} {'containerd':>11} {'ratio':>6}  target")
    for rt in RUNTIMES:
        verdict = "met" if ratios[rt] <= TARGET else "missed"
        print(
            f"{RUNTIME_LABELS[rt]:38} {med[rt]['py']:13.1f} {med[rt]['go']:11.1f} "
            f"{ratios[rt]:6.2f}  ≤ {TARGET} {verdict}"
        )
    print("background work after ctr returns (publishers, shim delete), median ms")
    for rt in RUNTIMES:
        print(f"{RUNTIME_LABELS[rt]:38} {tails[rt]['py']:13.1f} {tails[rt]['go']:11.1f}")
    for name in DAEMONS:
        parts = summary["breakdown_median_ms"][name]
        keys = sorted({k for p in parts.values() for k in p})
        if len(keys) <= 1:
            continue
        print(f"\nwhere a run goes on {LABELS[name]} (median ms of the spans inside each run)")
        print(f"{'span':48} " + " ".join(f"{rt:>9}" for rt in RUNTIMES))
        for key in keys:
            cells = [parts[rt].get(key) for rt in RUNTIMES]
            print(
                f"{key:48} "
                + " ".join(f"{c:9.1f}" if c is not None else f"{'-':>9}" for c in cells)
            )
    print("\nmemory (MiB)")
    for state, per in mem["daemons"].items():
        line = "   ".join(
            f"{LABELS[n]} RSS {per[n]['rss_kib'] / 1024:6.1f} PSS {per[n]['pss_kib'] / 1024:6.1f}"
            f" ({per[n]['threads']} threads)"
            for n in DAEMONS
        )
        print(f"  {state:34} {line}")
    for key, per in mem["shims"].items():
        line = "   ".join(
            f"{LABELS[n]}: RSS {per[n]['rss_median_kib'] / 1024:5.1f} "
            f"PSS {per[n]['pss_median_kib'] / 1024:5.1f} (n={per[n]['count']})"
            for n in DAEMONS
            if per[n]["count"]
        )
        print(f"  shim per container, {RUNTIME_LABELS[key]:36} {line}")
    return summary


def shim_summary(samples: list[dict[str, int]]) -> dict[str, Any]:
    return {
        "count": len(samples),
        "rss_median_kib": statistics.median(s["rss_kib"] for s in samples) if samples else 0,
        "pss_median_kib": statistics.median(s["pss_kib"] for s in samples) if samples else 0,
        "pss_sum_kib": sum(s["pss_kib"] for s in samples),
    }


def measure_memory(bench: Bench, args: argparse.Namespace, idle: dict[str, Any]) -> dict[str, Any]:
    ds = bench.daemons
    daemons: dict[str, Any] = {"idle, fresh (image imported)": idle}
    settle()
    daemons["idle, after the timed runs"] = {n: memory(d.pid) for n, d in ds.items()}
    print(f"starting {args.containers} sleeping containers (runpy-v2) on each daemon ...")
    t0 = time.perf_counter()
    start_many(bench, "runpy-v2", args.containers, "idle")
    started_s = time.perf_counter() - t0
    settle(2.0)
    daemons[f"{args.containers} running (runpy-v2)"] = {n: memory(d.pid) for n, d in ds.items()}
    shims = {"runpy-v2": {n: shim_summary(shim_memory(d, "idle-")) for n, d in ds.items()}}
    # A few with the real shim too, for its RSS beside ours (not for the daemons' figures).
    print(f"starting {args.runc_shims} more with runc-v2 on each, for that shim's RSS ...")
    start_many(bench, "runc-v2", args.runc_shims, "runc")
    settle(2.0)
    shims["runc-v2"] = {n: shim_summary(shim_memory(d, "runc-")) for n, d in ds.items()}
    for d in ds.values():
        running = sum(1 for s in d.view.tasks().values() if s == "RUNNING")
        if running != args.containers + args.runc_shims:
            raise RuntimeError(f"{d.name}: {running} tasks running")
    removed = {n: remove_all(d) for n, d in ds.items()}
    clean = wait_clean(ds)
    settle()
    daemons["idle, after removing them"] = {n: memory(d.pid) for n, d in ds.items()}
    print(
        "all removed, nothing left; the last shim exited after "
        + ", ".join(f"{s:.1f} s on {LABELS[n]}" for n, s in clean.items())
    )
    return {
        "daemons": daemons,
        "shims": shims,
        "start_both_s": started_s,
        "remove_s": removed,
        "shims_gone_after_remove_s": clean,
        "verified_clean": True,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each reverses the order")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per pair per round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs per pair first")
    ap.add_argument("--containers", type=int, default=50, help="sleeping containers per daemon")
    ap.add_argument(
        "--runc-shims", type=int, default=5, help="runc-v2 containers per daemon for shim RSS"
    )
    ap.add_argument("--tmp", default="/tmp", help="where the temp dir of everything goes")
    args = ap.parse_args()
    args.loadavg = os.getloadavg()
    if args.loadavg[0] > (os.cpu_count() or 1):
        print(f"warning: load average {args.loadavg[0]:.2f}: the host is busy", flush=True)
    # SIGTERM unwinds like Ctrl-C, through every cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    # The host sets PYTHONDONTWRITEBYTECODE: without fresh .pyc files every shim, runc-py and
    # publish process would compile its imports on each start, and the bench would time that.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "containerd_py", "shim", "runc_py", "stacklab"],
        cwd=REPO,
        check=True,
    )
    work = Path(tempfile.mkdtemp(prefix="sl-run-", dir=args.tmp))
    pairs = [(d, rt) for rt in RUNTIMES for d in DAEMONS]
    try:
        with setup(work) as bench:
            settle()
            idle = {n: memory(d.pid) for n, d in bench.daemons.items()}
            for daemon, runtime in pairs:
                for _ in range(args.warmup):
                    bench.run_once(daemon, runtime, timed=False)
            for r in range(args.rounds):
                order = pairs if r % 2 == 0 else list(reversed(pairs))
                for _ in range(args.runs):
                    for daemon, runtime in order:
                        bench.run_once(daemon, runtime, timed=True)
                print(f"round {r + 1}: done", flush=True)
            mem = measure_memory(bench, args, idle)
            summary = report(bench, args, mem)
    finally:
        tempfile.tempdir = None
        os.environ.pop("STACKLAB_ROOT", None)
        shutil.rmtree(work, ignore_errors=True)
    out = HERE / "results" / "containerd_py_tasks.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything is cleaned up by now
        sys.exit(130)
