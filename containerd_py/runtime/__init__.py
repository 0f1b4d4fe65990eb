"""containerd's runtime v2: one shim per task, started from its runtime name, spoken to over
ttrpc, outliving the daemon (`manager.py`); the bundle each shim runs in (`bundle.py`); the
shim binary and its connection (`shim.py`)."""
