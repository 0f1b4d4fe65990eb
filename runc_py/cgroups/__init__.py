"""Cgroup managers for runc-py: stands for runc's libcontainer/cgroups (the `fs` v1 and `fs2` v2
drivers behind one interface, plus the mount and path helpers of its utils.go)."""

from __future__ import annotations

import errno
import os
import time

TYPE_CHECKING = False  # typing costs runc-py start-up time; only the type checker needs it
if TYPE_CHECKING:
    from typing import Any, Protocol

    Given = dict[tuple[str, str | None], Any]

ROOT = "/sys/fs/cgroup"


class CgroupError(Exception):
    """A cgroup operation failed; the message is for the user, like runc's. `errno` is set when a
    system call failed."""

    def __init__(self, msg: str, err: int | None = None) -> None:
        super().__init__(msg)
        self.errno = err


if TYPE_CHECKING:

    class Manager(Protocol):
        def apply(self, pid: int) -> None: ...  # create the directories, move pid in (if > 0)
        def enter(self) -> None: ...  # move the calling single-threaded process in, cheaply
        def set(self, resources: dict[str, Any]) -> None: ...  # OCI linux.resources, maybe partial
        def freeze(self) -> None: ...
        def thaw(self) -> None: ...
        def frozen(self) -> bool: ...
        def pids(self) -> list[int]: ...
        def stats(self) -> dict[str, Any]: ...  # the "data" of `runc events --stats`
        def destroy(self) -> None: ...
        def exists(self) -> bool: ...
        def container_mounts(self) -> list[tuple[str, str]]: ...  # (name under /sys/fs/cgroup, dir)
        def to_state(self) -> dict[str, Any]: ...


def mountinfo() -> list[tuple[str, str, str, list[str]]]:
    """(root, mount point, fstype, super options) of every mount this process sees."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            a, b = pre.split(), post.split()
            out.append((a[3], a[4], b[0], b[2].split(",") if len(b) > 2 else []))
    return out


def own_cgroups() -> dict[str, str]:
    """This process's cgroup per v1 controller ("memory", "name=systemd", ...); v2 under ""."""
    res: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            res.update(dict.fromkeys(ctrls.split(","), path))
    return res


def fstypes() -> dict[str, str]:
    return {mnt: fstype for _, mnt, fstype, _ in mountinfo()}  # a later mount shadows an earlier


def detect_version() -> int:
    """2 only if /sys/fs/cgroup itself is cgroup2 (runc asks statfs for the magic; the mount table
    says the same), else 1. STACKLAB_CGROUP_VERSION=1|2 overrides."""
    env = os.environ.get("STACKLAB_CGROUP_VERSION", "")
    if env in ("1", "2"):
        return int(env)
    if env:
        raise CgroupError(f"STACKLAB_CGROUP_VERSION must be 1 or 2, not {env!r}")
    return 2 if fstypes().get(ROOT) == "cgroup2" else 1


def v2_mount() -> str:
    """The cgroup2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid."""
    types = fstypes()
    for mnt in (ROOT, ROOT + "/unified"):
        if types.get(mnt) == "cgroup2":
            return mnt
    raise CgroupError("cgroup v2 is not mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified")


def parse_path(cgroups_path: str | None, container_id: str) -> tuple[bool, str]:
    """(absolute?, normalised path starting with "/") for an OCI linux.cgroupsPath."""
    p = cgroups_path or container_id
    if ".." in p.split("/"):
        raise CgroupError(f'invalid cgroup path "{p}": must not contain ".."')
    norm = os.path.normpath("/" + p.lstrip("/"))
    if norm == "/":
        raise CgroupError(f'invalid cgroup path "{p}": a container cannot own the root cgroup')
    return p.startswith("/"), norm


def new_manager(
    cgroups_path: str | None, container_id: str, *, version: int | None = None
) -> Manager:
    absolute, path = parse_path(cgroups_path, container_id)
    if (version or detect_version()) == 2:
        from runc_py.cgroups.v2 import V2Manager

        return V2Manager.new(absolute, path)
    from runc_py.cgroups.v1 import V1Manager

    return V1Manager.new(absolute, path)


def from_state(d: dict[str, Any]) -> Manager:
    if d.get("version") == 2:
        from runc_py.cgroups.v2 import V2Manager

        return V2Manager(d["mount"], d["path"], list(d.get("created", [])))
    from runc_py.cgroups.v1 import V1Manager

    return V1Manager(dict(d["paths"]), dict(d["mounts"]), list(d.get("created", [])))


# --- helpers shared by v1 and v2 --------------------------------------------------------------


def given(r: dict[str, Any], supported: set[tuple[str, str | None]], driver: str) -> Given:
    """{(section, key): value} for each value set in OCI resources (key None for a section that is
    a list); anything this driver cannot apply is an error, not a silent no-op."""
    out: Given = {}
    for sec, v in r.items():
        for key, x in v.items() if isinstance(v, dict) and sec != "unified" else [(None, v)]:
            if x is None or x is False or x == [] or x == {}:
                continue
            if (sec, key) not in supported:
                name = f"{sec}.{key}" if key else sec
                raise CgroupError(f"cannot set {name}: not supported by runc-py on cgroup {driver}")
            out[sec, key] = x
    return out


def _msg(e: OSError) -> str:
    return (e.strerror or str(e)).lower()


def write(d: str, name: str, value: str | int) -> None:
    path = f"{d}/{name}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(value).encode())  # one write(2): the kernel parses each on its own
        finally:
            os.close(fd)
    except OSError as e:
        raise CgroupError(f'failed to write "{value}": write {path}: {_msg(e)}', e.errno) from None


def read(d: str, name: str) -> str:
    try:
        with open(f"{d}/{name}") as f:
            return f.read().strip()
    except OSError as e:
        raise CgroupError(f"failed to read {d}/{name}: {_msg(e)}", e.errno) from None


def opt(d: str, name: str) -> str | None:
    """The file's content, or None where the host does not provide it."""
    try:
        return read(d, name)
    except CgroupError:
        return None


def num(s: str | None, unlimited: int = 0) -> int:
    return unlimited if s == "max" else int(s.split()[0]) if s else 0


def kv(s: str | None) -> dict[str, int]:
    """Parse "key value" lines (memory.stat, cpu.stat, cgroup.events)."""
    return {k: int(v) for k, _, v in (ln.partition(" ") for ln in (s or "").splitlines()) if v}


def rows(s: str | None) -> list[list[str]]:
    return [ln.split() for ln in (s or "").splitlines()]


def ids(s: str | None) -> list[int]:
    """ "0-2,5" -> [0, 1, 2, 5]"""
    out: list[int] = []
    for part in filter(None, (s or "").split(",")):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def blkio_entry(dev: str, op: str, value: int) -> dict[str, Any]:
    major, _, minor = dev.partition(":")
    return {"major": int(major), "minor": int(minor), "op": op, "value": value}


def mkdirs(mount: str, d: str) -> list[str]:
    """mkdir -p d below mount; returns the directories it created, outermost first."""
    created, cur = [], mount
    for part in d[len(mount) :].strip("/").split("/"):
        cur += "/" + part
        try:
            os.mkdir(cur, 0o755)
            created.append(cur)
        except FileExistsError:
            pass
        except OSError as e:
            raise CgroupError(f"failed to create cgroup {cur}: {_msg(e)}", e.errno) from None
    return created


def procs(d: str) -> list[int]:
    """Every pid in d and its sub-cgroups."""
    return [int(p) for sub, _, _ in os.walk(d) for p in (opt(sub, "cgroup.procs") or "").split()]


def remove(leaves: list[str], created: list[str]) -> None:
    """rmdir each leaf and its sub-cgroups (retrying on EBUSY while exiting tasks leave), then the
    parents we created, as far as no other cgroup still lives in them."""
    for leaf in leaves:
        for d, _, _ in os.walk(leaf, topdown=False):
            delay = 0.01
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or delay > 1:
                        raise CgroupError(
                            f"failed to remove cgroup {d}: {_msg(e)}", e.errno
                        ) from None
                    time.sleep(delay)
                    delay *= 2
    for d in sorted(created, key=len, reverse=True):
        try:
            os.rmdir(d)
        except OSError:
            pass  # gone already, or shared with another container
