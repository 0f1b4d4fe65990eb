"""Disk usage and tree copies as containerd's continuity `fs` package does them
(`fs/du_unix.go`, `fs/copy.go`, `fs/copy_linux.go`)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat

from containerd_py.snapshots.api import Usage

log = logging.getLogger(__name__)

_BLOCK = 512  # the unit of st_blocks


def disk_usage(root: str) -> Usage:
    """Allocated bytes and inodes under `root` (itself included), each inode counted once."""
    seen: set[tuple[int, int]] = set()
    size = 0
    pending = [root]
    while pending:
        path = pending.pop()
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            size += st.st_blocks * _BLOCK
        if stat.S_ISDIR(st.st_mode):
            pending.extend(os.path.join(path, name) for name in os.listdir(path))
    return Usage(size=size, inodes=len(seen))


def copy_dir(dst: str, src: str) -> None:
    """Copy the tree `src` into the existing directory `dst`: owners, modes, times, xattrs,
    hard links, symlinks and device nodes, as a container's root filesystem needs."""
    _copy_tree(dst, src, {})


def _copy_tree(dst: str, src: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(src) as it:
        entries = list(it)  # closes the directory before recursing: one fd, not one per level
    for entry in entries:
        target = os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(target, 0o700)
            _copy_tree(target, entry.path, links)
            continue
        if stat.S_ISREG(mode):
            inode = (st.st_dev, st.st_ino)
            if inode in links:
                os.link(links[inode], target)
            else:
                if st.st_nlink > 1:
                    links[inode] = target  # later names of this inode link to this copy
                _copy_file(entry.path, target)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(entry.path), target)
        else:  # device nodes, fifos, sockets
            os.mknod(target, mode, st.st_rdev)
        _copy_metadata(entry.path, target, st)
    # A directory's own times last: creating its entries above changed them.
    _copy_metadata(src, dst, os.lstat(src))


def _copy_file(src: str, dst: str) -> None:
    with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
        copied = 0
        try:
            # copy_file_range shares extents on btrfs/xfs (reflinks) and stays in the kernel.
            while n := os.copy_file_range(fsrc.fileno(), fdst.fileno(), 1 << 30):
                copied += n
        except OSError as e:
            # Some filesystems refuse it; fall back to a plain copy, unless bytes already moved.
            if copied or e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            shutil.copyfileobj(fsrc, fdst)


def _copy_metadata(src: str, dst: str, st: os.stat_result) -> None:
    try:
        os.lchown(dst, st.st_uid, st.st_gid)
    except PermissionError:
        # Not root: fine as long as the owner is already right (the files are ours).
        current = os.lstat(dst)
        if (current.st_uid, current.st_gid) != (st.st_uid, st.st_gid):
            raise
    if not stat.S_ISLNK(st.st_mode):
        # After chown, which clears setuid/setgid bits.
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    _copy_xattrs(src, dst)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(src: str, dst: str) -> None:
    # Like containerd's native snapshotter, xattrs that cannot be copied (security.* without
    # privilege, user.* on symlinks) are skipped rather than failing the copy.
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as e:
        log.debug("failed to list xattrs on %s: %s", src, e)
        return
    for name in names:
        try:
            value = os.getxattr(src, name, follow_symlinks=False)
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError as e:
            log.debug("failed to copy xattr %r to %s: %s", name, dst, e)
