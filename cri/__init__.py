"""cri-py: the Kubernetes CRI v1 gRPC services, backed by containerd or the engine.

Nothing lives here yet; the CRI issue builds it."""
