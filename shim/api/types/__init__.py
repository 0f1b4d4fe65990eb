"""containerd.types and containerd.v1.types: mounts, process status, process info."""
