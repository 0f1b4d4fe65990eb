"""containerd.services.introspection.v1."""
