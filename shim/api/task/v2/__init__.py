"""containerd.task.v2 (shim.proto): the Task service and its messages."""
