"""containerd.types: descriptors, platforms and metrics shared by the services."""
