"""containerd.services.namespaces.v1: the .proto and its generated stubs."""
