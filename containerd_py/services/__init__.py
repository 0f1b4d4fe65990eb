"""containerd's gRPC services, one module each, bound to grpcio by `containerd_py.rpc`.

Each class implements its service's methods by name (`Content.Write` is
`content.ContentService.Write`), turning protobuf requests into calls on the stores and their
results back into protobuf."""
