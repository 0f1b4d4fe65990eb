"""containerd.services.events.v1."""
