"""containerd.services.containers.v1: the .proto and its generated stubs."""
