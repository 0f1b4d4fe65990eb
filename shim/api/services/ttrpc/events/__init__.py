"""The events service for shims."""
