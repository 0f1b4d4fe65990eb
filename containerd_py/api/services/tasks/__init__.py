"""containerd.services.tasks.v1."""
