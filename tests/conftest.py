"""Fixtures shared by every test layer: the shipped policy directory and the synthetic world."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from agency_stubs import World, build_world

ROOT = Path(__file__).resolve().parents[1]

# Property tests search the same examples on every run and every machine, so a random search can never
# fail a run by chance; a failure is reproducible from the test's output alone. The "explore" profile
# searches much further with fresh randomness and keeps failures in .hypothesis/ to replay them.
settings.register_profile("ci", derandomize=True, database=None, max_examples=200, deadline=None,
                          print_blob=True)
settings.register_profile("explore", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def policy_dir() -> Path:
    """The policies shipped in policies/, exactly as the demo and a deployment load them."""
    return ROOT / "policies"


@pytest.fixture(scope="session")
def shared_world() -> World:
    """The default seeded synthetic world (2,000 people and the fixed cast); treat it as read-only."""
    return build_world()
