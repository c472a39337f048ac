"""The locator key: OPRF secret scalars derived from a key ring the gateway alone holds (keys/locator.json).

Each key id's 32 random bytes are a seed; RFC 9497 DeriveKeyPair turns it into the secret scalar with the
info string "mash-gateway/locator/<key id>". Rotation adds a new key id; old ids stay until every node
has re-enrolled under the new one (docs/locator.md).
"""

from __future__ import annotations

from gateway.keyring import Keyring
from gateway.locator import oprf

INFO_PREFIX = b"mash-gateway/locator/"


class LocatorKeys:
    """The OPRF secret for each key id of the ring; `active_id` evaluates new enrolments."""

    def __init__(self, ring: Keyring) -> None:
        self._secrets = {kid: oprf.derive_key_pair(seed, INFO_PREFIX + kid.encode())[0]
                         for kid, seed in ring.keys.items()}
        self.active_id = ring.active_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id, the active one first."""
        return (self.active_id, *sorted(k for k in self._secrets if k != self.active_id))

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._secrets

    def secret(self, key_id: str) -> bytes:
        return self._secrets[key_id]
