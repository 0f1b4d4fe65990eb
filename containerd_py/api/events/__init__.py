"""containerd.events (and the image events, in containerd.services.images.v1): event payloads."""
