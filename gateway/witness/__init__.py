"""A C2SP tlog-witness: cosigns a log's checkpoints only after checking they extend what it cosigned before."""

from gateway.witness.client import WitnessClient, WitnessConfig, WitnessError
from gateway.witness.core import Response, Witness, load_or_create_key

__all__ = ["Response", "Witness", "WitnessClient", "WitnessConfig", "WitnessError", "load_or_create_key"]
