"""containerd.services.introspection.v1: the .proto and its generated stubs."""
