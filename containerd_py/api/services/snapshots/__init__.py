"""containerd.services.snapshots.v1."""
