"""runc-py: an OCI runtime with runc's command line, the bottom of the stack.

Like runc (opencontainers/runc): `create` builds the container's namespaces, mounts and cgroups
and leaves its init blocked on an exec fifo; `start` opens the fifo and the init execs the user's
process. Everything a container is, is done here with plain system calls.
"""
