"""The service layer, transport-free and gRPC-free: one use case per module (query, screening), sharing
admission (validation and refusal audit), planning (a pure function of the policy view) and the fan-out."""
