#!/usr/bin/env python3
"""containerd-shim-runpy-v2 against containerd-shim-runc-v2, in the same run, under one real
containerd (the interop tests' own: temp root, busybox imported), both driving runc-py.

Times `ctr run --rm IMAGE ID true` with each shim, in turns, and takes the RSS of each idle shim
holding one sleeping container; reports ours/theirs ratios of medians. Needs root. Writes
bench/results/shim.json. The containerd helper removes everything on exit.

    sudo .venv/bin/python bench/shim.py [--runs 15] [--warmup 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "interop"))

from containerd import Containerd, start_containerd  # noqa: E402

RUNPY_V2 = "io.containerd.runpy.v2"


def run_ours(cd: Containerd, cid: str, *cmd: str, flags: tuple[str, ...] = ("--rm",)) -> None:
    cd.ids.add(cid)
    argv = ["run", "--runtime", RUNPY_V2, "--fifo-dir", str(cd.dir / "fifo"), *flags,
            cd.image, cid, *cmd]  # fmt: skip
    proc = cd.ctr(*argv)
    if proc.returncode != 0:
        raise SystemExit(f"ctr run (ours) failed: {proc.stderr}")


def run_theirs(cd: Containerd, cid: str, *cmd: str, flags: tuple[str, ...] = ("--rm",)) -> None:
    proc = cd.run(cid, *cmd, flags=flags)
    if proc.returncode != 0:
        raise SystemExit(f"ctr run (runc-v2) failed: {proc.stderr}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    times: dict[str, list[float]] = {"ours": [], "runc-v2": []}
    with start_containerd(namespace=f"bench-shim-{os.getpid()}") as cd:
        for i in range(args.warmup + args.runs):
            order = [("ours", run_ours), ("runc-v2", run_theirs)]
            for name, run in order if i % 2 == 0 else reversed(order):
                t0 = time.perf_counter()
                run(cd, f"bench-{name}-{i}", "true")
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - t0)
        run_ours(cd, "bench-idle-ours", "sleep", "1000", flags=("-d",))
        run_theirs(cd, "bench-idle-runc-v2", "sleep", "1000", flags=("-d",))
        time.sleep(1)
        rows = cd.task_rows()
        rss = {name: rss_kib(parent(rows[f"bench-idle-{name}"][0])) for name in times}
        cd.reset()
        cd.leftovers()  # waits for the shims to exit
    shutil.rmtree(f"/run/containerd/runc/{cd.namespace}", ignore_errors=True)  # our shim's --root
    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    summary = {
        "ctr_run_rm_true_ms": med,
        "ctr_run_ratio": med["ours"] / med["runc-v2"],
        "idle_shim_rss_kib": rss,
        "rss_ratio": rss["ours"] / rss["runc-v2"],
        "runs": args.runs,
    }
    out = HERE / "results" / "shim.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"ctr run --rm true   ours {med['ours']:.0f} ms   runc-v2 {med['runc-v2']:.0f} ms"
          f"   ratio {summary['ctr_run_ratio']:.2f}")  # fmt: skip
    print(f"idle shim RSS       ours {rss['ours'] / 1024:.1f} MiB   runc-v2 "
          f"{rss['runc-v2'] / 1024:.1f} MiB   ratio {summary['rss_ratio']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
