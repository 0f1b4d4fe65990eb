"""containerd.services.tasks.v1: the .proto and its generated stubs."""
