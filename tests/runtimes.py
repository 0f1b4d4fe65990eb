"""Drive an OCI runtime binary from a test, the way containerd's go-runc drives runc: one
subprocess per command, each runtime with its own `--root`, so the real runc and runc-py can
run the same bundle side by side without seeing each other's containers.

Which binaries are judged comes from the environment, as in crun's tests (`OCI_RUNTIME`):

- `OCI_RUNTIME`: the runtime under test (default: `runc-py` next to this Python, then on PATH);
- `OCI_RUNTIME_REFERENCE`: the runtime it is compared with (default: `runc` on PATH).

Bundles share one busybox rootfs, read-only (`root.readonly`), and differ only in config.json.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacklab import testimage

Spec = dict[str, Any]
# runc logs an error as `time="..." level=error msg="..."` on stderr (logrus' text format).
_MSG_RE = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def reference_binary() -> str | None:
    """The real runc (or whatever OCI_RUNTIME_REFERENCE names)."""
    return os.environ.get("OCI_RUNTIME_REFERENCE") or shutil.which("runc")


def candidate_binary() -> str | None:
    """The runtime under test: OCI_RUNTIME, else our runc-py."""
    if os.environ.get("OCI_RUNTIME"):
        return os.environ["OCI_RUNTIME"]
    beside = Path(sys.executable).parent / "runc-py"
    return str(beside) if beside.exists() else shutil.which("runc-py")


def chrooted() -> bool:
    """Is this process's root not its mount namespace's (as on a debootstrapped test machine)?"""
    try:
        here, init = os.stat("/"), os.stat("/proc/1/root")
    except PermissionError:
        return True  # root may not follow pid 1's root link only from under a chroot
    except OSError:
        return False
    return (here.st_dev, here.st_ino) != (init.st_dev, init.st_ino)


def error_message(stderr: str) -> str:
    """The `msg` of the last error line runc printed (or the raw text if it is not logfmt)."""
    found: list[str] = _MSG_RE.findall(stderr)
    if not found:
        return stderr.strip()
    return found[-1].replace('\\"', '"').replace("\\\\", "\\")


@dataclass
class Runtime:
    """One OCI runtime binary with a private `--root` (its state directory)."""

    name: str
    binary: str
    root: Path

    def __call__(self, *args: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run one command. Its output goes to files, not pipes: after `create` the container's
        init still holds them open, and a pipe would not see end-of-file until it exits."""
        argv = [self.binary, "--root", str(self.root), *map(str, args)]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout
            )
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(), err.read().decode()
        return subprocess.CompletedProcess(argv, p.returncode, stdout, stderr)

    def popen(self, *args: str | Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.binary, "--root", str(self.root), *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, bundle: Path, cid: str) -> subprocess.CompletedProcess[str]:
        """`run` in the foreground (no tty), then `delete -f` whatever is left."""
        try:
            return self("run", "--bundle", bundle, cid)
        finally:
            self.delete(cid)

    def delete(self, cid: str) -> None:
        self("delete", "--force", cid)

    def state(self, cid: str) -> dict[str, Any] | None:
        p = self("state", cid)
        return json.loads(p.stdout) if p.returncode == 0 else None

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> dict[str, Any] | None:
        """Poll `state` until the container reaches `want` (or give up and return the last)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.state(cid)
            if (st and st["status"] == want) or time.monotonic() > deadline:
                return st
            time.sleep(0.02)

    def ids(self) -> list[str]:
        p = self("list", "--quiet")
        return p.stdout.split() if p.returncode == 0 else []

    def cleanup(self) -> None:
        """Force-delete every container under our root, then the root itself."""
        for cid in self.ids():
            self.delete(cid)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def runtime_pair(prefix: str = "stacklab-rt-") -> Iterator[tuple[Runtime, Runtime]]:
    """(reference, candidate), each with a fresh temp root; both cleaned up on the way out."""
    ref_bin, cand_bin = reference_binary(), candidate_binary()
    if not ref_bin or not cand_bin:
        raise RuntimeError("need both a reference runtime (runc) and the one under test")
    ref = Runtime(os.path.basename(ref_bin), ref_bin, Path(tempfile.mkdtemp(prefix=prefix)))
    cand = Runtime(os.path.basename(cand_bin), cand_bin, Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        yield ref, cand
    finally:
        for rt in (ref, cand):
            rt.cleanup()


class Bundles:
    """Bundles that share one busybox rootfs: `make(name, edit)` writes `<dir>/<name>/config.json`
    (runc's default spec, changed by `edit`) whose root.path is the shared, read-only rootfs."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        base = testimage.build_bundle(directory / "base")
        self.rootfs = base / "rootfs"
        self.default: Spec = json.loads((base / "config.json").read_text())

    def spec(self, args: list[str]) -> Spec:
        spec = copy.deepcopy(self.default)
        spec["process"]["args"] = list(args)
        spec["root"] = {"path": str(self.rootfs), "readonly": True}
        return spec

    def make(self, name: str, args: list[str], edit: Callable[[Spec], None] | None = None) -> Path:
        spec = self.spec(args)
        if edit is not None:
            edit(spec)
        bundle = self.dir / name
        bundle.mkdir(exist_ok=True)
        (bundle / "config.json").write_text(json.dumps(spec, indent=2) + "\n")
        return bundle


def leftovers(token: str, paths: list[Path]) -> list[str]:
    """What a test run left behind: processes whose command line names `token`, mounts under
    any of `paths`, cgroup directories named after `token`."""
    found = []
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
            zombie = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        # A killed container's init is reparented to pid 1, which reaps it when it gets to it:
        # a zombie holds nothing but its pid.
        if (token in cmdline or token in cgroup) and int(pid) != me and not zombie:
            found.append(f"process {pid}: {cmdline.strip()}")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4]
            if any(mnt == str(p) or mnt.startswith(f"{p}/") for p in paths):
                found.append(f"mount {mnt}")
    for dirpath, dirnames, _ in os.walk("/sys/fs/cgroup"):
        for d in dirnames:
            if token in d:
                found.append(f"cgroup {dirpath}/{d}")
    return found


@contextmanager
def module_bundles(token: str, tidy: Callable[[], None] = lambda: None) -> Iterator[Bundles]:
    """One busybox rootfs for a test module (each test writes its own config.json). On the way
    out, whatever the module's containers left behind fails it — after a few seconds' grace,
    since a killed init is reaped by pid 1 only when it gets to it; `tidy` runs before each
    look (e.g. to remove what the reference runtime leaves by design)."""
    directory = Path(tempfile.mkdtemp(prefix=f"{token}-"))
    try:
        yield Bundles(directory)
    finally:
        deadline = time.monotonic() + 5
        while True:
            tidy()
            left = leftovers(token, [directory])
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not any(item.startswith("mount ") for item in left):
            shutil.rmtree(directory, ignore_errors=True)
        assert not left, f"left behind: {left}"
