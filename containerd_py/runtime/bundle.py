"""A task's bundle, as containerd's runtime v2 lays it out: `<state>/io.containerd.runtime.v2.task/
<ns>/<id>` holds `config.json` (the OCI spec), `rootfs/` (where the shim mounts the snapshot),
`work` (a link to a directory under the root that survives reboots), `log` (a fifo the shim
writes its log into), and the shim's `address` and `shim-binary-path` once it runs."""

import contextlib
import errno
import os
import shutil

from containerd_py.errdefs import AlreadyExists, ContainerdError, NotFound
from containerd_py.metadata.identifiers import validate
from containerd_py.mount import unmount_all

TASK_PLUGIN = "io.containerd.runtime.v2.task"


class Bundle:
    def __init__(self, state: str, root: str, namespace: str, id: str) -> None:
        self.id = id
        self.namespace = namespace
        self.path = os.path.join(state, TASK_PLUGIN, namespace, id)
        self.work = os.path.join(root, TASK_PLUGIN, namespace, id)

    @classmethod
    def create(cls, state: str, root: str, namespace: str, id: str, spec: bytes) -> "Bundle":
        validate(id)
        b = cls(state, root, namespace, id)
        os.makedirs(os.path.dirname(b.path), mode=0o711, exist_ok=True)
        try:
            os.mkdir(b.path, 0o700)
        except FileExistsError:
            raise AlreadyExists(f"bundle {b.path}") from None
        try:
            os.mkdir(os.path.join(b.path, "rootfs"), 0o711)
            os.makedirs(os.path.dirname(b.work), mode=0o711, exist_ok=True)
            shutil.rmtree(b.work, ignore_errors=True)  # left by a task of the same id
            os.mkdir(b.work, 0o711)
            os.symlink(b.work, os.path.join(b.path, "work"))
            os.mkfifo(os.path.join(b.path, "log"), 0o700)
            b.write("config.json", spec, 0o666)
        except BaseException:
            b.delete()
            raise
        return b

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def read(self, name: str) -> str:
        try:
            with open(self.file(name)) as f:
                return f.read().strip()
        except FileNotFoundError:
            raise NotFound(f"{self.file(name)}: no such file or directory") from None

    def write(self, name: str, data: bytes, mode: int = 0o600) -> None:
        """Atomically: a daemon killed halfway leaves the old file or none."""
        tmp = self.file(f".{name}.tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.file(name))

    def delete(self) -> None:
        """Remove the bundle; a rootfs the shim left mounted is unmounted first."""
        rootfs = self.file("rootfs")
        with contextlib.suppress(OSError, ContainerdError):
            unmount_all(rootfs)
        shutil.rmtree(self.work, ignore_errors=True)
        try:
            shutil.rmtree(self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(self.path))  # the namespace's directory, when empty


def list_bundles(state: str, root: str) -> list[Bundle]:
    """Every bundle on disk, namespace by namespace (what start-up recovers)."""
    top = os.path.join(state, TASK_PLUGIN)
    found = []
    for ns in sorted(os.listdir(top)) if os.path.isdir(top) else []:
        for id in sorted(os.listdir(os.path.join(top, ns))):
            if not id.startswith("."):
                found.append(Bundle(state, root, ns, id))
    return found
