"""The changes between two directory trees, found by walking both at once (continuity's
fs.Changes, its double walk).

Both trees are walked depth first with siblings in byte order, so paths come out sorted by
their components and the two walks merge like sorted lists. Changes come out in that order,
which is an order they can be applied in: a removed directory is a single deletion (its
contents go with it), and so is a directory replaced by a file.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

_COMPARE_CHUNK = 1 << 20


class ChangeKind(enum.Enum):
    UNMODIFIED = 0  # only reported for hardlinked files: the tar must recreate all their links
    ADD = 1
    MODIFY = 2
    DELETE = 3


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    path: str  # "/"-rooted, like "/etc/passwd"
    st: os.stat_result | None  # lstat of the upper file; None for a deletion


@dataclass(frozen=True)
class _Entry:
    path: str
    key: tuple[bytes, ...]  # the components as bytes: what both walks are sorted by
    st: os.stat_result
    full: str


def _children(root: str, parent: _Entry | None) -> Iterator[_Entry]:
    rel = parent.path if parent else ""
    key = parent.key if parent else ()
    with os.scandir(root + rel or "/") as it:
        names = sorted((os.fsencode(e.name), e.name) for e in it)
    for bname, name in names:
        path = f"{rel}/{name}"
        full = root + path
        yield _Entry(path, (*key, bname), os.lstat(full), full)


def _walk(root: str) -> Iterator[_Entry]:
    """Every path below `root`, each directory followed by its contents (filepath.Walk)."""
    root = root.rstrip("/")
    stack = [_children(root, None)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        yield entry
        if stat.S_ISDIR(entry.st.st_mode):
            stack.append(_children(root, entry))


def capability(path: str) -> bytes | None:
    """The security.capability xattr of `path` (file capabilities), if any."""
    try:
        return os.getxattr(path, "security.capability", follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENODATA, errno.ENOTSUP):
            return None
        raise


def _same_content(p1: str, p2: str) -> bool:
    with open(p1, "rb") as f1, open(p2, "rb") as f2:
        while True:
            b1 = f1.read(_COMPARE_CHUNK)
            if b1 != f2.read(_COMPARE_CHUNK):
                return False
            if not b1:
                return True


def _same_file(f1: _Entry, f2: _Entry) -> bool:
    s1, s2 = f1.st, f2.st
    if (s1.st_dev, s1.st_ino) == (s2.st_dev, s2.st_ino):
        return True
    if (s1.st_mode, s1.st_uid, s1.st_gid, s1.st_rdev) != (
        s2.st_mode,
        s2.st_uid,
        s2.st_gid,
        s2.st_rdev,
    ):
        return False
    if capability(f1.full) != capability(f2.full):
        return False
    if stat.S_ISDIR(s1.st_mode):
        return True  # a directory's size and times follow its contents, compared on their own
    if s1.st_size != s2.st_size:
        return False
    sec1, ns1 = divmod(s1.st_mtime_ns, 1_000_000_000)
    sec2, ns2 = divmod(s2.st_mtime_ns, 1_000_000_000)
    if sec1 != sec2:
        return False
    if ns1 == 0 and ns2 == 0:
        # Both may have been truncated to seconds by a tar round trip: only content can tell.
        if stat.S_ISLNK(s1.st_mode):
            return os.readlink(f1.full) == os.readlink(f2.full)
        return s1.st_size == 0 or _same_content(f1.full, f2.full)
    return ns1 == ns2


def changes(lower: str, upper: str) -> Iterator[Change]:
    """What turns the tree `lower` into the tree `upper`, in path order."""
    walk1, walk2 = _walk(lower), _walk(upper)
    f1, f2 = next(walk1, None), next(walk2, None)
    removed: tuple[bytes, ...] | None = None  # a lower directory gone with all its contents
    while f1 is not None or f2 is not None:
        if f1 is not None and (f2 is None or f1.key < f2.key):
            if removed is not None and f1.key[: len(removed)] == removed:
                f1 = next(walk1, None)  # implied by its directory's deletion
                continue
            removed = f1.key if stat.S_ISDIR(f1.st.st_mode) else None
            yield Change(ChangeKind.DELETE, f1.path, None)
            f1 = next(walk1, None)
        elif f2 is not None and (f1 is None or f2.key < f1.key):
            removed = None
            yield Change(ChangeKind.ADD, f2.path, f2.st)
            f2 = next(walk2, None)
        elif f1 is not None and f2 is not None:  # the same path in both
            dir_to_other = stat.S_ISDIR(f1.st.st_mode) and not stat.S_ISDIR(f2.st.st_mode)
            removed = f1.key if dir_to_other else None
            if not _same_file(f1, f2):
                yield Change(ChangeKind.MODIFY, f2.path, f2.st)
            elif not stat.S_ISDIR(f2.st.st_mode) and f2.st.st_nlink > 1:
                yield Change(ChangeKind.UNMODIFIED, f2.path, f2.st)
            f1, f2 = next(walk1, None), next(walk2, None)
