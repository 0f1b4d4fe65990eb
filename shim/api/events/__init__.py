"""containerd.events: the task events a shim publishes."""
