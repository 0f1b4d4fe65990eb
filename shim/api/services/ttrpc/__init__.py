"""containerd's ttrpc services (served on its ttrpc socket, for shims)."""
