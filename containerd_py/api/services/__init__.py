"""containerd.services.*.v1: one package per gRPC service."""
