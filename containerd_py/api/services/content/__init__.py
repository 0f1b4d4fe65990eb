"""containerd.services.content.v1."""
