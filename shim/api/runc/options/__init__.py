"""containerd.runc.v1 (oci.proto): Options, CheckpointOptions, ProcessDetails."""
