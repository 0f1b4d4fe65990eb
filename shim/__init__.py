"""containerd-shim-runpy-v2: one detached shim v2 per container, speaking ttrpc.

Nothing lives here yet; the shim issue builds it."""
