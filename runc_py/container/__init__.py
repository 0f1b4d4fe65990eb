"""A container's life in runc-py (like runc's `libcontainer`): its state on disk, the create
that forks its init, the init itself, and the operations on a running container."""
