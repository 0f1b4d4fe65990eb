"""The shim v2 task API."""
