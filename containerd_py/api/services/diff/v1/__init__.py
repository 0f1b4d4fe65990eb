"""containerd.services.diff.v1: the .proto and its generated stubs."""
