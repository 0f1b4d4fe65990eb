"""containerd.services.namespaces.v1."""
