"""containerd.services.images.v1: the .proto and its generated stubs."""
