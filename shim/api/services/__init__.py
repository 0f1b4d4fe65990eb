"""containerd's services, as far as a shim calls them."""
