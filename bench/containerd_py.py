#!/usr/bin/env python3
"""containerd-py's pull against real containerd's, in the same run, from one local registry.

One image (the busybox test layer plus one big layer holding a single file of --size-mb MB)
is pushed to a docker-registry on 127.0.0.1 and pulled, unpacked into overlayfs, in turns by:

- `ours`:    our client (`containerd_py.client.pull.pull`) on containerd-py, in this process;
- `ctr-py`:  the real `ctr images pull --plain-http` on containerd-py;
- `ctr`:     the same `ctr` on the real containerd (Debian's 1.6).

Between runs the image is removed with `ctr images rm --sync` and the run waits until the
daemon's blob, ingest and snapshot directories are empty and no lease or image is left.
A fourth column, `tar`, times `tar -xzf` of the big layer's blob into a fresh directory.
Unpack times come from containerd-py's `Diff.Apply` spans (`trace/spans.jsonl`) and from
containerd's "diff applied" debug log lines. Reports ratios of medians. Needs root. Writes
bench/results/containerd_py-DATA.json; removes every daemon, mount and temp dir it made.

    sudo .venv/bin/python bench/containerd_py.py [--rounds 2] [--runs 3] [--size-mb 100]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# Run as a script, this file's own directory comes first on sys.path, and its name would
# shadow the containerd_py package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "interop")]

import registry  # noqa: E402
from containerd import Containerd, start_containerd  # noqa: E402
from containerd_py_daemon import ContainerdPy, start_containerd_py  # noqa: E402

from containerd_py.client.pull import pull  # noqa: E402
from containerd_py.client.remotes import Resolver, configure_hosts  # noqa: E402
from stacklab import testimage  # noqa: E402

NAMESPACE = "bench-pull"
REPOSITORY = "bench/big"
CONTENT = "io.containerd.content.v1.content"
OVERLAYFS = "io.containerd.snapshotter.v1.overlayfs"
PULL_TIMEOUT = 600.0
SIDES = ("ours", "ctr-py", "ctr", "tar")
LABELS = {
    "ours": "client → containerd-py",
    "ctr-py": "ctr → containerd-py",
    "ctr": "ctr → containerd",
    "tar": "tar -xzf (big layer)",
}

_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_GO_PART = re.compile(r"([0-9.]+)(h|ms|m|s|us|µs|ns)")
_CTR_UNPACK = re.compile(r"^done: (\S+)", re.MULTILINE)
_DIFF_APPLIED = re.compile(r'msg="diff applied" d=(\S+) digest="?(sha256:[0-9a-f]+)')


def go_duration(text: str) -> float:
    """Seconds in a Go `time.Duration` string such as `1.5s`, `812.3ms` or `1m2s`."""
    return sum(float(n) * _GO_UNITS[unit] for n, unit in _GO_PART.findall(text))


@dataclass
class Store:
    """One daemon's root and `ctr` in the bench namespace, for the checks between runs."""

    name: str
    root: Path
    ctr: Callable[..., subprocess.CompletedProcess[str]]

    def _count(self, *parts: str) -> int:
        top = self.root.joinpath(*parts)
        return len(os.listdir(top)) if top.is_dir() else 0

    def snapshots(self) -> int:
        return self._count(OVERLAYFS, "snapshots")

    def leftovers(self) -> list[str]:
        found = []
        for what, n in (
            ("blobs", self._count(CONTENT, "blobs", "sha256")),
            ("ingests", self._count(CONTENT, "ingest")),
            ("snapshots", self.snapshots()),
        ):
            if n:
                found.append(f"{n} {what}")
        for what in ("images", "leases"):
            if names := self.run_ctr(what, "ls", "-q").split():
                found.append(f"{what}: {names}")
        return found

    def run_ctr(self, *args: str) -> str:
        proc = self.ctr(*args)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: ctr {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def wait_empty(self, timeout: float = 15) -> None:
        """Until nothing of a pull is left, or fail: a run on a warm store downloads nothing."""
        deadline = time.monotonic() + timeout
        while left := self.leftovers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} is not empty before a run: {'; '.join(left)}")
            time.sleep(0.05)


@dataclass
class Sample:
    side: str
    seconds: float
    start_ns: int
    end_ns: int
    ctr_unpack: float | None = None  # ctr's own "done:" time for its unpack phase
    log_lines: list[str] = field(default_factory=list)  # containerd's log during the run


@dataclass
class Bench:
    work: Path
    ref: str
    layer_digest: str
    layer_blob: Path
    layers: int
    image_bytes: int  # every blob of the image: what a pull downloads
    cd: Containerd
    cdpy: ContainerdPy
    stores: dict[str, Store]
    samples: list[Sample] = field(default_factory=list)

    def pull_ours(self) -> None:
        hosts = configure_hosts(plain_http=True)
        with self.cdpy.client(NAMESPACE) as client, Resolver(hosts=hosts) as resolver:
            pull(client, self.ref, resolver=resolver)

    def run(self, side: str, timed: bool) -> None:
        store = self.stores.get(side)
        if store is not None:
            store.wait_empty()
        target = self.work / "tar-out"
        if side == "tar":
            target.mkdir()
        log = self.cd.dir / "containerd.log"
        log_start = log.stat().st_size
        os.sync()  # the last run's writeback must not land in this one
        stdout = ""
        start_ns, t0 = time.time_ns(), time.perf_counter()
        if side == "ours":
            self.pull_ours()
        elif side == "tar":
            subprocess.run(["tar", "-xzf", str(self.layer_blob), "-C", str(target)], check=True)
        else:
            assert store is not None
            stdout = store.run_ctr("images", "pull", "--plain-http", self.ref)
        seconds, end_ns = time.perf_counter() - t0, time.time_ns()
        if side == "tar":
            shutil.rmtree(target)
        else:
            assert store is not None
            if store.snapshots() != self.layers:
                raise RuntimeError(f"{side}: {store.snapshots()} snapshots after the pull")
            store.run_ctr("images", "rm", "--sync", self.ref)
        if not timed:
            return
        sample = Sample(side, seconds, start_ns, end_ns)
        if m := _CTR_UNPACK.search(stdout):
            sample.ctr_unpack = go_duration(m.group(1))
        if side == "ctr":
            with log.open("rb") as f:
                f.seek(log_start)
                sample.log_lines = f.read().decode(errors="replace").splitlines()
        self.samples.append(sample)

    def times(self, side: str) -> list[float]:
        return [s.seconds for s in self.samples if s.side == side]


def spans(cdpy: ContainerdPy) -> list[dict[str, Any]]:
    path = cdpy.dir / "trace" / "spans.jsonl"
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def breakdown(bench: Bench) -> dict[str, dict[str, list[float]]]:
    """Per side, per part, the seconds of every timed run: the big layer's Content.Write and
    Diff.Apply on containerd-py (spans), its apply on containerd (log), ctr's unpack phase."""
    recorded = spans(bench.cdpy)
    out: dict[str, dict[str, list[float]]] = {}
    for s in bench.samples:
        parts = out.setdefault(s.side, {})
        parts.setdefault("total", []).append(s.seconds)
        for span in recorded:
            if not s.start_ns <= span["start_ns"] <= span["end_ns"] <= s.end_ns:
                continue
            attrs = span.get("attrs") or {}
            seconds = (span["end_ns"] - span["start_ns"]) / 1e9
            if span["name"] == "Content.Write" and bench.layer_digest in attrs.get("ref", ""):
                parts.setdefault("write", []).append(seconds)
            elif span["name"] == "Diff.Apply" and attrs.get("digest") == bench.layer_digest:
                parts.setdefault("apply", []).append(seconds)
            elif span["name"] == "Leases.Delete":
                parts.setdefault("lease_delete", []).append(seconds)
        for line in s.log_lines:
            if (m := _DIFF_APPLIED.search(line)) and m.group(2) == bench.layer_digest:
                parts.setdefault("apply", []).append(go_duration(m.group(1)))
        if s.ctr_unpack is not None:
            parts.setdefault("ctr_unpack_phase", []).append(s.ctr_unpack)
    return out


def layer_data(size: int, kind: str) -> bytes:
    if kind == "random":
        return os.urandom(size)
    # Hex digits of random bytes: 4 bits of entropy a byte, so gzip halves them with Huffman
    # codes alone, and inflating costs what it costs on real binaries and text.
    return os.urandom(size // 2).hex().encode()


def uncompressed_size(blob: Path) -> int:
    size = 0
    with gzip.open(blob, "rb") as f:
        while chunk := f.read(1 << 20):
            size += len(chunk)
    return size


def fstype(path: Path) -> str:
    out = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)], capture_output=True)
    return out.stdout.decode().strip() or "?"


def mounts_under(directory: Path) -> list[str]:
    """Mount points below `directory`, deepest first."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted((p for p in points if p.startswith(f"{directory}/")), key=len, reverse=True)


def _median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


@contextlib.contextmanager
def setup(work: Path, size: int, kind: str) -> Iterator[Bench]:
    """The image in a registry, both daemons, all under `work` (removed on exit)."""
    tempfile.tempdir = str(work)  # the fixtures' own temp dirs go under `work` too
    with contextlib.ExitStack() as stack:
        reg = stack.enter_context(registry.Registry("plain"))
        ref = f"{reg.host}/{REPOSITORY}:latest"
        print(f"building the image: {size / 1e6:.0f} MB of {kind} bytes ...", flush=True)
        info = testimage.build_image_layout(
            work / "layout", ref, extra_layers=[[("big.bin", layer_data(size, kind))]]
        )
        registry.push_layout(reg.url, info.layout, REPOSITORY, "latest")
        cd = stack.enter_context(start_containerd(namespace=f"{NAMESPACE}-{os.getpid()}"))
        cdpy = stack.enter_context(start_containerd_py(work / "containerd-py"))
        stores = {
            "ours": Store("containerd-py", cdpy.root,
                          lambda *a: cdpy.ctr(*a, namespace=NAMESPACE, timeout=PULL_TIMEOUT)),
            "ctr": Store("containerd", cd.dir / "root",
                         lambda *a: cd.ctr(*a, timeout=PULL_TIMEOUT)),
        }  # fmt: skip
        stores["ctr-py"] = stores["ours"]
        # The busybox image the fixture imports shares our base layer: gone, so that every
        # run of every side starts from an empty store.
        stores["ctr"].run_ctr("images", "rm", "--sync", cd.image)
        digest = info.layer_digests[-1]
        yield Bench(
            work=work,
            ref=ref,
            layer_digest=digest,
            layer_blob=info.layout / "blobs" / "sha256" / digest.removeprefix("sha256:"),
            layers=len(info.layer_digests),
            image_bytes=sum(p.stat().st_size for p in (info.layout / "blobs").rglob("*")),
            cd=cd,
            cdpy=cdpy,
            stores=stores,
        )


def report(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    kind = args.data
    parts = breakdown(bench)
    blob_bytes = bench.layer_blob.stat().st_size
    diff_bytes = uncompressed_size(bench.layer_blob)
    med = {side: statistics.median(bench.times(side)) for side in SIDES}
    apply_py = _median(parts["ours"].get("apply", []) + parts["ctr-py"].get("apply", []))
    apply_go = _median(parts["ctr"].get("apply"))
    unpack = {"containerd-py Diff.Apply": apply_py, "containerd diff applied": apply_go}
    unpack["tar -xzf"] = med["tar"]
    summary: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "data": kind,
        "layer_bytes_compressed": blob_bytes,
        "layer_bytes_uncompressed": diff_bytes,
        "rounds": args.rounds,
        "runs": args.runs,
        "filesystem": f"{bench.work.parent} ({fstype(bench.work)})",
        "pull_median_s": {side: med[side] for side in ("ours", "ctr-py", "ctr")},
        "pull_ratio_ours_to_ctr": med["ours"] / med["ctr"],
        "pull_ratio_ctr_py_to_ctr": med["ctr-py"] / med["ctr"],
        "unpack_median_s": unpack,
        "unpack_mb_per_s": {k: diff_bytes / 1e6 / v for k, v in unpack.items() if v},
        "unpack_ratio_containerd_py_to_tar": apply_py / med["tar"] if apply_py else None,
        "breakdown_median_s": {
            side: {part: statistics.median(v) for part, v in p.items()} for side, p in parts.items()
        },
        "samples_s": {side: bench.times(side) for side in SIDES},
        "containerd": subprocess.run(
            ["containerd", "--version"], capture_output=True, text=True
        ).stdout.strip(),
        "kernel": os.uname().release,
    }
    total_mb = bench.image_bytes / 1e6
    print(
        f"\nbig layer: {diff_bytes / 1e6:.1f} MB tar ({kind}), {blob_bytes / 1e6:.1f} MB gzip; "
        f"{args.rounds} rounds x {args.runs} runs; {summary['filesystem']}"
    )
    print(f"{'pull':24} {'median s':>9} {'÷ ctr':>7} {'MB/s':>7}")
    for side in ("ours", "ctr-py", "ctr"):
        print(
            f"{LABELS[side]:24} {med[side]:9.2f} {med[side] / med['ctr']:7.2f} "
            f"{total_mb / med[side]:7.1f}"
        )
    verdict = "met" if summary["pull_ratio_ours_to_ctr"] <= 1.5 else "missed"
    print(f"target ours ÷ ctr ≤ 1.5: {verdict}")
    print(f"\n{'unpack of the big layer':24} {'median s':>9} {'÷ tar':>7} {'MB/s':>7}")
    for name, seconds in unpack.items():
        if seconds is None:
            print(f"{name:24} {'-':>9}")
            continue
        print(
            f"{name:24} {seconds:9.2f} {seconds / med['tar']:7.2f} "
            f"{diff_bytes / 1e6 / seconds:7.1f}"
        )
    print(
        f"\n{'where a pull goes (s)':24} {'total':>7} {'Write':>7} {'Apply':>7} {'ctr unpack':>11}"
    )
    for side in ("ours", "ctr-py", "ctr"):
        m = summary["breakdown_median_s"][side]
        cells = [m.get(part) for part in ("total", "write", "apply", "ctr_unpack_phase")]
        text = [f"{c:7.2f}" if c is not None else f"{'-':>7}" for c in cells]
        print(f"{LABELS[side]:24} {text[0]} {text[1]} {text[2]} {text[3]:>11}")
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="rounds; each reverses the order")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per side per round")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per side first")
    ap.add_argument("--size-mb", type=int, default=100, help="the big layer's file, in MB")
    ap.add_argument(
        "--data",
        choices=("random", "hex"),
        default="random",
        help="random: gzip cannot shrink the layer; hex: it halves it",
    )
    ap.add_argument("--tmp", default="/var/tmp", help="where the temp dir of everything goes")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C, through every cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "containerd_py", "stacklab", "shim"],
        cwd=REPO,
        check=True,
    )
    work = Path(tempfile.mkdtemp(prefix="stacklab-bench-pull-", dir=args.tmp))
    try:
        with setup(work, args.size_mb * 1_000_000, args.data) as bench:
            for side in SIDES:
                for _ in range(args.warmup):
                    bench.run(side, timed=False)
            for r in range(args.rounds):
                order = SIDES if r % 2 == 0 else tuple(reversed(SIDES))
                for i in range(args.runs):
                    for side in order:
                        bench.run(side, timed=True)
                    print(f"round {r + 1}, run {i + 1}: done", flush=True)
            summary = report(bench, args)
    finally:
        tempfile.tempdir = None
        for point in mounts_under(work):  # the fixtures unmount their own; this is a backstop
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(work, ignore_errors=True)
    out = HERE / "results" / f"containerd_py-{args.data}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # everything is cleaned up by now
        sys.exit(130)
