"""containerd_py.client: what the engine and CRI layers import, as Go programs import containerd's."""
