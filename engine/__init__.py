"""dockerd-py: the Docker Engine REST API (like moby's `dockerd`), on top of containerd.

Nothing lives here yet; the engine issue builds it."""
