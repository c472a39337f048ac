"""Fixtures shared by every test layer: the shipped policy directory and the synthetic world."""

from __future__ import annotations

from pathlib import Path

import pytest

from agency_stubs import World, build_world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def policy_dir() -> Path:
    """The policies shipped in policies/, exactly as the demo and a deployment load them."""
    return ROOT / "policies"


@pytest.fixture(scope="session")
def shared_world() -> World:
    """The default seeded synthetic world (2,000 people and the fixed cast); treat it as read-only."""
    return build_world()
