"""containerd.services.leases.v1."""
