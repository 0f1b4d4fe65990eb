"""containerd.services.events.ttrpc.v1 (events.proto): Events.Forward, Envelope."""
