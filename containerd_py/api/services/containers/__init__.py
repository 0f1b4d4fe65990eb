"""containerd.services.containers.v1."""
