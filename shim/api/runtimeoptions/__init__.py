"""runtimeoptions: the generic runtime options any shim may be given."""
