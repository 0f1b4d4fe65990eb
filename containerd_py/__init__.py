"""containerd-py: containerd's v1 gRPC API (images, content, snapshots, containers, tasks).

Nothing lives here yet; the containerd-py issues build it."""
