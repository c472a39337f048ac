"""Helpers shared by the policy engine tests: where the shipped policy and fixtures are, and file edits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

SHIPPED = Path(__file__).resolve().parents[3] / "policies"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

PolicyCopy = Callable[..., Path]


def shipped_record_holders() -> tuple[str, ...]:
    """The record-holding agencies of the shipped partnership, in declared order (they own policy files)."""
    from gateway.partnership import load_plan

    return load_plan(SHIPPED).record_holders


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
