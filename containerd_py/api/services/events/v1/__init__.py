"""containerd.services.events.v1: the .proto and its generated stubs."""
