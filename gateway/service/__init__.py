"""The service layer: one use case per module (query, screening), transport-free and gRPC-free."""
