"""The runc shim's own types."""
