"""The MASH console: a web application that reads and acts through the gateway's gRPC API only."""
