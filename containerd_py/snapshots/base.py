"""What the overlay and native snapshotters share: the metadata store, one directory per
snapshot id under `snapshots/`, and the crash-safe way those directories come and go.

Creation builds the directory under a temporary `new-*` name and renames it to its id before
the transaction commits; removal commits first, then renames the directory to `rm-*` and
deletes it. A SIGKILL at any point leaves at most a directory the database does not know,
which `cleanup()` deletes (the constructor runs it). containerd's overlay.go and native.go each
do this on their own; here it is written once.
"""

from __future__ import annotations

import abc
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence

from containerd_py.errdefs import ContainerdError, NotFound
from containerd_py.snapshots.api import Info, Kind, Mount, Snapshotter, Usage
from containerd_py.snapshots.fsutil import disk_usage
from containerd_py.snapshots.storage import MetaStore, Snapshot

log = logging.getLogger(__name__)


def _wrap(err: ContainerdError, prefix: str) -> ContainerdError:
    """containerd's `fmt.Errorf("prefix: %w", err)`: same class, longer message."""
    return type(err)(f"{prefix}: {err}")


class DirSnapshotter(Snapshotter):
    # containerd words the Mounts error differently per snapshotter.
    mounts_error = "failed to get active mount"

    def __init__(self, root: str) -> None:
        os.makedirs(root, 0o700, exist_ok=True)
        self.root = root
        self._snapshots = os.path.join(root, "snapshots")
        os.makedirs(self._snapshots, 0o700, exist_ok=True)
        self._store = MetaStore(os.path.join(root, "metadata.db"))
        self.cleanup()  # whatever a SIGKILL left behind, before anyone can trip over it

    @abc.abstractmethod
    def _has_dir(self, kind: Kind, parent: str) -> bool:
        """Whether a new snapshot gets a directory of its own."""

    @abc.abstractmethod
    def _populate(self, path: str, snapshot: Snapshot) -> None:
        """Fill the new snapshot's (temporary) directory."""

    @abc.abstractmethod
    def _usage_path(self, snapshot_id: str) -> str:
        """The tree whose disk usage is the snapshot's own."""

    @abc.abstractmethod
    def _mounts(self, snapshot: Snapshot) -> list[Mount]: ...

    def _path(self, snapshot_id: str) -> str:
        return os.path.join(self._snapshots, snapshot_id)

    def stat(self, key: str) -> Info:
        with self._store.read() as tx:
            return tx.get_info(key)[1]

    def update(self, info: Info, fieldpaths: Sequence[str] = ()) -> Info:
        with self._store.write() as tx:
            updated = tx.update_info(info, fieldpaths)
            tx.commit()
        return updated

    def usage(self, key: str) -> Usage:
        with self._store.read() as tx:
            snapshot_id, info, usage = tx.get_info(key)
        if info.kind != Kind.ACTIVE:
            return usage  # measured at commit; views own nothing
        try:
            return disk_usage(self._usage_path(snapshot_id))
        except FileNotFoundError as e:
            raise NotFound("snapshot does not exist: not found") from e  # removed meanwhile

    def mounts(self, key: str) -> list[Mount]:
        with self._store.read() as tx:
            try:
                snapshot = tx.get_snapshot(key)
            except ContainerdError as e:
                raise _wrap(e, self.mounts_error) from e
        return self._mounts(snapshot)

    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        with self._store.write() as tx:
            snapshot_id, info, _ = tx.get_info(key)
            # Measure only what can be committed: a native view may have no directory.
            usage = (
                disk_usage(self._usage_path(snapshot_id)) if info.kind == Kind.ACTIVE else Usage()
            )
            try:
                tx.commit_active(key, name, usage, labels)
            except ContainerdError as e:
                raise _wrap(e, "failed to commit snapshot") from e
            tx.commit()

    def remove(self, key: str) -> None:
        with self._store.write() as tx:
            try:
                snapshot_id = tx.remove(key)
            except ContainerdError as e:
                raise _wrap(e, "failed to remove") from e
            tx.commit()
            # The key is gone for good now: a failure below only leaves work for cleanup().
            aside = self._set_aside(snapshot_id)
        if aside:
            self._delete(aside)

    def walk(self) -> Iterator[Info]:
        with self._store.read() as tx:
            infos = tx.walk()  # a list, so the lock is not held while the caller iterates
        return iter(infos)

    def cleanup(self) -> None:
        # Under the write lock, so no create is between its mkdtemp and its commit.
        with self._store.write() as tx:
            known = tx.ids()
            orphans = [self._set_aside(n) for n in os.listdir(self._snapshots) if n not in known]
        for path in orphans:
            if path:
                self._delete(path)

    def close(self) -> None:
        self._store.close()

    def _create(
        self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        with self._store.write() as tx:
            try:
                snapshot = tx.create_snapshot(kind, key, parent, labels)
            except ContainerdError as e:
                raise _wrap(e, "failed to create snapshot") from e
            path = self._path(snapshot.id) if self._has_dir(kind, parent) else ""
            if path:
                self._make_dir(path, snapshot)
            try:
                tx.commit()
            except BaseException:
                if path:
                    shutil.rmtree(path, ignore_errors=True)
                raise
        return self._mounts(snapshot)

    def _make_dir(self, path: str, snapshot: Snapshot) -> None:
        if os.path.lexists(path):
            # A crash between rename and commit left it, and the rolled-back id came round again.
            shutil.rmtree(path)
        tmp = tempfile.mkdtemp(prefix="new-", dir=self._snapshots)
        try:
            self._populate(tmp, snapshot)
            os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _set_aside(self, name: str) -> str | None:
        """Rename `snapshots/<name>` out of the way, so deleting it can take its time outside
        the lock; None if there is nothing to delete or the rename failed."""
        path = os.path.join(self._snapshots, name)
        if name.startswith("rm-"):
            return path  # already aside: a remove that crashed (or is still deleting)
        aside = os.path.join(self._snapshots, f"rm-{name}-{secrets.token_hex(4)}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return None  # a native view of a parent has no directory
        except OSError as e:
            log.warning("failed to set %s aside for removal: %s", path, e)
            return None
        return aside

    def _delete(self, path: str) -> None:
        try:
            shutil.rmtree(path)
        except OSError as e:
            # Logged, not raised: the metadata is already gone; cleanup() will try again.
            log.warning("failed to remove directory %s: %s", path, e)
