"""The `mash-gateway` command line: serve, demo, pki, keys, policy and audit command groups."""
