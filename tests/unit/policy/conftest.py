"""Fixtures for the policy engine tests: the shipped policy, and writable copies with broken overlays."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from policy_helpers import FIXTURES, SHIPPED, PolicyCopy

from gateway.policy import PolicySnapshot, load_snapshot


@pytest.fixture(scope="session")
def shipped() -> PolicySnapshot:
    """The policy directory shipped in the repository, loaded once."""
    return load_snapshot(SHIPPED)


@pytest.fixture
def policy_copy(tmp_path: Path) -> PolicyCopy:
    """Make a writable copy of the shipped policy, optionally with a fixture overlaid on top."""
    counter = iter(range(1000))

    def make(overlay: str | None = None) -> Path:
        target = tmp_path / f"policies-{next(counter)}"
        shutil.copytree(SHIPPED, target)
        if overlay is not None:
            shutil.copytree(FIXTURES / overlay, target, dirs_exist_ok=True)
        return target

    return make
