"""runc features: what this runtime supports, as JSON (runtime-spec features.md)."""

from __future__ import annotations

import json
import sys

from runc_py.cli import SPEC_VERSION, Context
from runc_py.container.hooks import KINDS
from runc_py.container.namespaces import FLAGS as NAMESPACES
from runc_py.container.rootfs import MOUNT_FLAGS, PROPAGATION
from runc_py.linux import caps, seccomp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = ""
FLAGS: list[Any] = []


def run(ctx: Context, opts: dict[str, Any], pos: list[str]) -> int:
    sc = seccomp.supported()
    features = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(KINDS),
        "mountOptions": sorted([*MOUNT_FLAGS, *PROPAGATION]),
        "linux": {
            "namespaces": sorted(NAMESPACES),
            "capabilities": caps.known_capabilities(),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": sc,
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.seccomp.libseccomp.version": seccomp.libseccomp_version() or "",
        },
    }
    sys.stdout.write(json.dumps(features, indent="    ") + "\n")
    return 0
