"""The query service with the shipped policy, a fake transport, a recording audit sink and a fixed clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.keyring import Keyring
from gateway.policy import PolicyHolder
from gateway.testing import FixedClock


@pytest.fixture(scope="session")
def holder(policy_dir: Path) -> PolicyHolder:
    return PolicyHolder.from_directory(policy_dir, clock=FixedClock())


@pytest.fixture(scope="session")
def keys() -> dict[str, Keyring]:
    return {name: Keyring.generate("k1") for name in ("token", "sealing", "pseudonym")}
