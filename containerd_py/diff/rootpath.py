"""Resolve a path inside a root directory as if that root were `/` (continuity's fs.RootPath).

A layer may carry `../../etc/passwd`, `/etc/passwd`, or a symlink `a -> /etc` followed by an
entry `a/passwd`. Each of them must land inside the root, never outside: `..` stops at the
root, and an absolute symlink target restarts from the root, the way the kernel would resolve
them for a process chrooted there.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from containerd_py.errdefs import InvalidArgument

_MAX_LINKS = 255  # fs.RootPath gives up after as many symlinks, so a loop cannot spin forever


def clean_parts(name: str) -> list[str]:
    """`name`'s components with `.` dropped and `..` applied, never climbing above the top:
    filepath.Clean of name joined to `/`. Empty for the root itself."""
    parts: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return parts


def root_path(root: str, parts: Sequence[str]) -> str:
    """`root` joined with `parts`, every symlink on the way followed but bounded to `root`.

    Components that do not exist are taken as plain names. The result has no symlink in any
    component that exists; its last component is only followed if it is a symlink.
    """
    todo = list(reversed(parts))
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if done:
                done.pop()
            continue
        done.append(part)
        path = os.path.join(root, *done)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISLNK(st.st_mode):
            continue
        links += 1
        if links > _MAX_LINKS:
            raise InvalidArgument(f"failed to get root path of {'/'.join(parts)}: too many links")
        target = os.readlink(path)
        done.pop()
        if target.startswith("/"):
            done.clear()
        todo.extend(reversed(target.split("/")))
    return os.path.join(root, *done)
