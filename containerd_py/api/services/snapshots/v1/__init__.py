"""containerd.services.snapshots.v1: the .proto and its generated stubs."""
