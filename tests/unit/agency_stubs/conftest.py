"""Shared fixtures for the agency-stub unit tests: one generated world per session (it is immutable)."""

from __future__ import annotations

import pytest

from agency_stubs import World, build_world


@pytest.fixture(scope="session")
def world() -> World:
    """The default world (default seed, 2,000 generated people plus the cast)."""
    return build_world()
