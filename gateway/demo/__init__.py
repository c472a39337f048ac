"""The demo partnership: a simulated node per record-holding agency (six with a synthetic world, adult social care
from its seeded records) and a gateway on loopback with mTLS, and the MASH story."""
