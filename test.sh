#!/bin/bash
# The test command (README, .ci/run): set up, lint, type-check, then every test — unit,
# integration (root: namespaces, mounts, cgroups) and interop (the real runc and containerd).
# Extra arguments go to pytest, e.g. ./test.sh -k differential
set -euo pipefail
cd "$(dirname "$0")"
./install.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest -q -ra "$@"
