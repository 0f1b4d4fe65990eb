"""containerd.services.version.v1: the .proto and its generated stubs."""
