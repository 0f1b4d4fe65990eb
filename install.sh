#!/bin/bash
# Set up stacklab on Debian 12, as root: the Debian packages the stack and its interop tests need
# (the real peers: runc, containerd with ctr and its runc-v2 shim, docker-registry; busybox-static
# for the test image), then the Python package with its dev extras in ./.venv.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

DEBS=(
  python3 python3-venv        # the interpreter runc-py runs on (Debian's, built with PGO: fast start)
  runc containerd             # the real peers: runc, containerd, ctr, containerd-shim-runc-v2
  docker-registry             # a real OCI distribution registry on 127.0.0.1 for pull tests
  busybox-static              # the one binary the test image is built from
  libseccomp2                 # runc-py loads seccomp filters through it
  hyperfine time              # bench/: timings against the real peer, peak RSS
  psmisc procps util-linux iproute2 tmux   # pstree, ps, nsenter/unshare, ip, a pty for -t tests
)

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Debian packages start nothing here, but on a host with systemd they would: stacklab's tests
# run their own containerd on their own sockets, so the system one is left as the host had it.

if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv .venv
fi
# compat mode puts the checkout on sys.path with a plain .pth line: no import hook that every
# runc-py start would pay for.
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
# pip writes the launcher's shebang without its flags (see bin/runc-py): put them back.
sed -i '1s|^#!\(.*python[0-9.]*\)$|#!\1 -IS|' .venv/bin/runc-py
# Byte-compile now: runc-py and the shim start on every container operation, and a machine
# with PYTHONDONTWRITEBYTECODE set would otherwise recompile every module on every start.
.venv/bin/python -m compileall -q -j 0 runc_py stacklab engine containerd_py shim cri >/dev/null
echo "install.sh: ready (.venv/bin/runc-py, .venv/bin/stacklab)"
