"""The Linux system calls runc-py needs that Python's `os` module lacks (like runc's
`libcontainer/system` and the C in `libcontainer/nsenter`)."""
