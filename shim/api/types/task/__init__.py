"""containerd.v1.types (task.proto): Status, Process, ProcessInfo."""
