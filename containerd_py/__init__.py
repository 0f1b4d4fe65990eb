"""containerd-py: containerd's v1 gRPC API (images, content, snapshots, leases, diff, events),
one daemon on a unix socket that the real `ctr` drives, and `containerd_py.client`."""

VERSION = "v1.6.20-stacklab"  # the containerd release whose API this speaks
