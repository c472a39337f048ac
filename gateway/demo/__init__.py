"""The demo partnership: six simulated agency nodes and a gateway on loopback with mTLS, and the MASH story."""
