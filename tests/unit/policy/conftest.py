"""Fixtures for the policy engine tests: the shipped policy, writable copies of it, and broken overlays."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.policy import PolicySnapshot, load_snapshot

SHIPPED = Path(__file__).resolve().parents[3] / "policies"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

PolicyCopy = Callable[..., Path]


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


def edit(path: Path, old: str, new: str) -> None:
    """Replace one exact piece of text in a policy file (the test fails if it is not there)."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def append(path: Path, text: str) -> int:
    """Append lines to a policy file and return the line number of the first appended line."""
    before = path.read_text(encoding="utf-8")
    if not before.endswith("\n"):
        before += "\n"
    path.write_text(before + text, encoding="utf-8")
    return before.count("\n") + 1
