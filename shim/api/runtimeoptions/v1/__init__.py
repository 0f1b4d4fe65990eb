"""runtimeoptions.v1 (api.proto): Options, a config file for the shim's runtime."""
