"""containerd.services.version.v1."""
