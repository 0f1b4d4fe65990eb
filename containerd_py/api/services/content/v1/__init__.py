"""containerd.services.content.v1: the .proto and its generated stubs."""
