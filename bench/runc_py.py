#!/usr/bin/env python3
"""runc-py against the real runc, in the same run, on the same `/bin/true` bundle.

Measures `run`, a `create && start && delete -f` cycle (hyperfine) and the peak RSS of `run`
(`/usr/bin/time -v`), and reports runc-py/runc ratios of medians: absolute times drift on a
noisy machine, ratios taken in the same run much less. Needs root. Writes the raw hyperfine JSON
and summary.json to bench/results/. Everything it makes (containers, cgroups, the tmpfs with
both runtime roots, the bundle) is removed on exit, Ctrl-C and failure included.

    sudo .venv/bin/python bench/runc_py.py [--rounds 4] [--runs 10] [--warmup 3] [--rss-runs 5]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
VENV_PY = REPO / ".venv" / "bin" / "python"
TARGET = 1.5  # the target for both timing ratios
NAMES = ("runc", "runc-py")


def run_q(
    argv: list[str], cwd: str | Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run quietly; raise CalledProcessError (with its stderr) on failure."""
    return subprocess.run(argv, check=True, text=True, capture_output=True, cwd=cwd, env=env)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bin = {"runc": args.runc, "runc-py": args.runc_py}
        tag = f"stacklab-bench-{os.getpid()}"
        self.ids = {n: {"run": f"{tag}-{n}-run", "cycle": f"{tag}-{n}-cycle"} for n in NAMES}
        self.tmp = self.mnt = ""  # made by setup(), removed by cleanup()
        self.mounted = False

    @property
    def bundle(self) -> str:
        return os.path.join(self.tmp, "bundle")

    @property
    def env(self) -> dict[str, str]:
        """runc-py records its trace spans under $STACKLAB_ROOT: keep them in our tmpfs."""
        return dict(os.environ, STACKLAB_ROOT=os.path.join(self.mnt, "stacklab"))

    def prefix(self, name: str) -> list[str]:
        return [self.bin[name], "--root", os.path.join(self.mnt, name)]

    def setup(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="stacklab-bench.")
        # Runtime state on tmpfs, as /run is on a systemd host (/run may be plain disk here, and
        # runc-py fsyncs its state.json): one tmpfs for both roots and runc-py's spans.
        self.mnt = tempfile.mkdtemp(prefix="stacklab-bench.", dir="/run")
        run_q(["mount", "-t", "tmpfs", "-o", "mode=0700,size=64m", "tmpfs", self.mnt])
        self.mounted = True
        for name in NAMES:
            os.mkdir(os.path.join(self.mnt, name), 0o700)
        # Stale .pyc files (this host sets PYTHONDONTWRITEBYTECODE) would time the compiler.
        run_q([str(VENV_PY), "-m", "compileall", "-q", "-j0", "runc_py", "stacklab"], cwd=REPO)
        run_q([str(VENV_PY), "-m", "stacklab.testimage", "bundle", self.bundle, "--", "true"])

    def remove_containers(self) -> list[str]:
        """`delete --force` every id the bench uses; return the cgroups still there (a runtime
        killed half-way through create leaves a cgroup that no state names)."""
        left = []
        for name in NAMES:
            for cid in self.ids[name].values():
                delete = [*self.prefix(name), "delete", "--force", cid]
                subprocess.run(delete, env=self.env, capture_output=True, timeout=30)
                cgroups = glob.glob(f"/sys/fs/cgroup/{cid}") + glob.glob(f"/sys/fs/cgroup/*/{cid}")
                for cg in cgroups:
                    try:
                        os.rmdir(cg)
                    except OSError:
                        left.append(cg)
        return left

    def cleanup(self) -> None:
        if self.mounted:
            # A runtime that hyperfine left behind when killed may still be mid-create, holding
            # its cgroup: retry for up to 10 s.
            for _ in range(50):
                if not (left := self.remove_containers()):
                    break
                time.sleep(0.2)
            else:
                print(f"bench: cgroups left behind: {' '.join(left)}", file=sys.stderr)
        if self.mounted and subprocess.run(["umount", self.mnt]).returncode != 0:
            subprocess.run(["umount", "--lazy", self.mnt])
        if self.mnt:
            os.rmdir(self.mnt)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def hyperfine(self, metric: str, commands: dict[str, str]) -> dict[str, float]:
        """hyperfine on one command per runtime, in rounds that swap which goes first (this
        machine's speed drifts over seconds); the median over all rounds' runs, in ms."""
        times: dict[str, list[float]] = {name: [] for name in commands}
        for rnd in range(1, self.args.rounds + 1):
            out = RESULTS / f"{metric}-{rnd}.json"
            argv = ["hyperfine", "-N", "--warmup", str(self.args.warmup)]
            argv += ["--runs", str(self.args.runs), "--export-json", str(out)]
            for name in sorted(commands, reverse=rnd % 2 == 0):
                argv += ["-n", name, commands[name]]
            print(f"\n== {metric}, round {rnd}/{self.args.rounds}", flush=True)
            subprocess.run(argv, check=True, env=self.env, cwd=self.bundle)
            for r in json.loads(out.read_text())["results"]:
                times[r["command"]] += r["times"]
        return {name: statistics.median(t) * 1000 for name, t in times.items()}

    def bench_run(self) -> dict[str, float]:
        return self.hyperfine(
            "run",
            {
                n: shlex.join([*self.prefix(n), "run", "--bundle", self.bundle, self.ids[n]["run"]])
                for n in NAMES
            },
        )

    def bench_cycle(self) -> dict[str, float]:
        # One process per cycle, the same small sh script for both runtimes; `delete --force`
        # because `true` may still be exiting when start returns.
        def cycle(name: str) -> str:
            p, cid = self.prefix(name), self.ids[name]["cycle"]
            script = "; ".join(
                shlex.join(a)
                for a in (
                    [*p, "create", "--bundle", self.bundle, cid],
                    [*p, "start", cid],
                    [*p, "delete", "--force", cid],
                )
            )
            return shlex.join(["sh", "-ec", script])

        return self.hyperfine("cycle", {n: cycle(n) for n in NAMES})

    def bench_rss(self) -> dict[str, float]:
        """Median "Maximum resident set size" of `run`, in MiB, the runtimes taking turns."""
        print(f"\n== rss ({self.args.rss_runs} runs each, /usr/bin/time -v)", flush=True)
        samples: dict[str, list[int]] = {n: [] for n in NAMES}
        for _ in range(self.args.rss_runs):
            for name in NAMES:
                cmd = [*self.prefix(name), "run", "--bundle", self.bundle, self.ids[name]["run"]]
                p = run_q(["/usr/bin/time", "-v", *cmd], env=self.env, cwd=self.bundle)
                m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
                assert m, p.stderr
                samples[name].append(int(m.group(1)))
        (RESULTS / "rss.json").write_text(json.dumps({"kbytes": samples}, indent=2) + "\n")
        return {n: statistics.median(s) / 1024 for n, s in samples.items()}


def host_info(runc: str, runc_py: str) -> dict[str, str]:
    cgroup = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1"
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "kernel": platform.release(),
        "cpus": str(os.cpu_count()),
        "cgroup": cgroup,
        "runc": run_q([runc, "--version"]).stdout.splitlines()[0],
        "runc-py": run_q([runc_py, "--version"]).stdout.splitlines()[0],
        "python": run_q([str(VENV_PY), "-VV"]).stdout.strip(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4, help="hyperfine rounds per metric (default 4)")
    ap.add_argument("--runs", type=int, default=10, help="timed runs per command and round (10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs per round first (3)")
    ap.add_argument("--rss-runs", type=int, default=5, help="runs per runtime for peak RSS")
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    ap.add_argument("--runc-py", default=str(REPO / ".venv" / "bin" / "runc-py"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (sudo)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    # SIGTERM cleans up like Ctrl-C (hyperfine, in our process group, gets the Ctrl-C itself).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    bench = Bench(args)
    try:
        bench.setup()
        metrics = [
            ("run", "ms", bench.bench_run(), TARGET),
            ("create+start+delete", "ms", bench.bench_cycle(), TARGET),
            ("peak RSS of run", "MiB", bench.bench_rss(), None),
        ]
    except KeyboardInterrupt:
        print("\nbench: interrupted, cleaning up", file=sys.stderr)
        return 130
    except subprocess.CalledProcessError as e:
        print(
            f"bench: {shlex.join(e.cmd)} failed ({e.returncode})\n{e.stderr or ''}", file=sys.stderr
        )
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()

    rows = []
    print(f"\n{'metric':<21}{'runc':>10}{'runc-py':>10}{'ratio':>7}  target")
    for metric, unit, med, target in metrics:
        ratio = med["runc-py"] / med["runc"]
        verdict = "-" if target is None else f"<= {target} {'ok' if ratio <= target else 'MISSED'}"
        a, b = f"{med['runc']:.1f} {unit}", f"{med['runc-py']:.1f} {unit}"
        print(f"{metric:<21}{a:>10}{b:>10}{ratio:>7.2f}  {verdict}")
        row = {"metric": metric, "unit": unit, "runc": med["runc"], "runc-py": med["runc-py"]}
        rows.append({**row, "ratio": ratio, "target": target})
    summary = {
        "host": host_info(args.runc, args.runc_py),
        "runs": args.runs * args.rounds,
        "metrics": rows,
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nraw hyperfine JSON and summary.json in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
