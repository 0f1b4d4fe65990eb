"""containerd-py's metadata layer: what each namespace owns, in SQLite (`db.py`), over the
shared content store and snapshotters, and the garbage collector that ties them together."""
