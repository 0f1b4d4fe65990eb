"""One module per runc command: its flags (`FLAGS`), usage line (`USAGE`) and `run()`; and
the two argument helpers most of them share."""

from __future__ import annotations

import os

from runc_py.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def container_id(pos: list[str]) -> str:
    if len(pos) != 1:
        raise UsageError(f"requires exactly 1 argument (container id), got {len(pos)}")
    return pos[0]


def preserved(opts: dict[str, Any]) -> int:
    """--preserve-fds plus the LISTEN_FDS that systemd socket activation handed us."""
    n = int(opts.get("preserve-fds") or 0)
    if os.environ.get("LISTEN_FDS", "").isdigit():
        n += int(os.environ["LISTEN_FDS"])
    return n
