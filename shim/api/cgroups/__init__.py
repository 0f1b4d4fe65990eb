"""containerd/cgroups' metrics: what a runc-style shim's Stats answers with."""
