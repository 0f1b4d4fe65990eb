"""containerd.services.leases.v1: the .proto and its generated stubs."""
