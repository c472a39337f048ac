"""A real partnership per test: a node per record-holding agency and a gateway on port 0, every hop over mutual TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agency_stubs import World
from gateway.demo.partnership import Partnership


@pytest.fixture
async def partnership(tmp_path: Path, policy_dir: Path, shared_world: World) -> AsyncIterator[Partnership]:
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world) as running:
        yield running
