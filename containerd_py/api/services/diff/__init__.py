"""containerd.services.diff.v1."""
