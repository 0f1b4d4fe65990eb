"""containerd.services.images.v1."""
