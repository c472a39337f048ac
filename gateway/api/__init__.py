"""The gRPC edge: thin servicers, identity and error mapping, and the only proto ↔ domain conversion."""
