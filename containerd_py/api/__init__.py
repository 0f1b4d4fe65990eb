"""Wire definitions of containerd's v1 gRPC API: containerd 1.6's .proto files, rewritten with
our comments, and the stubs `python -m stacklab.protogen containerd_py` generates from them.

Messages the shim layer already defines (containerd.types.Mount, containerd.v1.types.*, the task
events) are imported from shim/api rather than redefined, so both trees load in one process."""
