"""Wire definitions of the shim v2 protocol: containerd 1.6's .proto files, rewritten with our
comments, and the stubs `python -m stacklab.protogen shim/api` generates from them."""
