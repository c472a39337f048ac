"""Comparing two policy snapshots: every (role, purpose, agency, category) whose effective level changes."""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gateway.domain import DisclosureLevel
from gateway.errors import Finding
from gateway.policy.index import NOTHING
from gateway.policy.snapshot import PolicySnapshot, PolicyUnreadable


@dataclass(frozen=True, slots=True)
class LevelChange:
    """One cell whose granted level differs between two snapshots."""

    role: str
    purpose: str
    agency: str
    category: str
    old: DisclosureLevel
    new: DisclosureLevel
    old_by: tuple[str, ...]
    new_by: tuple[str, ...]

    @property
    def widened(self) -> bool:
        return self.new > self.old


@dataclass(frozen=True, slots=True)
class VocabularyChange:
    """A name added to or removed from one vocabulary."""

    kind: str
    name: str
    added: bool


def concrete_cells(snapshot: PolicySnapshot) -> Iterator[tuple[str, str, str, str]]:
    """Every (role, purpose, agency, category) a real request can ask about, in a stable order."""
    vocab = snapshot.vocabulary
    roles = sorted(r for r, v in vocab.roles.items() if not v.group)
    purposes = sorted(p for p, v in vocab.purposes.items() if not v.group)
    categories = [c for c in vocab.record_categories.values() if not c.group]
    for role in roles:
        for purpose in purposes:
            for category in categories:
                yield role, purpose, category.agency, category.name


def diff_snapshots(
    old: PolicySnapshot, new: PolicySnapshot
) -> tuple[list[LevelChange], list[VocabularyChange]]:
    """Level changes over the union of both snapshots' cells, and vocabulary names added or removed."""
    changes: list[LevelChange] = []
    seen: set[tuple[str, str, str, str]] = set()
    for cells in (concrete_cells(old), concrete_cells(new)):
        for cell in cells:
            if cell in seen:
                continue
            seen.add(cell)
            role, purpose, agency, category = cell
            before = (
                old.decide(role, purpose, agency, category) if category in old.record_categories else NOTHING
            )
            after = (
                new.decide(role, purpose, agency, category) if category in new.record_categories else NOTHING
            )
            if before.level != after.level:
                changes.append(
                    LevelChange(
                        role,
                        purpose,
                        agency,
                        category,
                        before.level,
                        after.level,
                        (*before.allowed_by, *before.denied_by),
                        (*after.allowed_by, *after.denied_by),
                    )
                )
    vocab_changes: list[VocabularyChange] = []
    for kind in (
        "agencies",
        "roles",
        "purposes",
        "legal_bases",
        "record_categories",
        "field_categories",
        "agreements",
    ):
        before_names = set(getattr(old.vocabulary, kind))
        after_names = set(getattr(new.vocabulary, kind))
        vocab_changes += [VocabularyChange(kind, n, True) for n in sorted(after_names - before_names)]
        vocab_changes += [VocabularyChange(kind, n, False) for n in sorted(before_names - after_names)]
    changes.sort(key=lambda c: (c.role, c.purpose, c.agency, c.category))
    return changes, vocab_changes


@contextmanager
def materialise(spec: str, *, cwd: Path | None = None) -> Iterator[Path]:
    """A policy directory from a path, or from a git revision written ``REV:path`` (``HEAD~1:policies``)."""
    as_path = Path(spec)
    if as_path.is_dir():
        yield as_path
        return
    revision, sep, inner = spec.partition(":")
    if not sep or not revision:
        raise PolicyUnreadable([Finding(spec, 0, "not a directory, nor a git revision written REV:path")])
    inner_path = PurePosixPath(inner or ".")
    if inner_path.is_absolute() or ".." in inner_path.parts:
        raise PolicyUnreadable(
            [Finding(spec, 0, "the path after ':' must be relative to the repository root")]
        )
    top = _git(["rev-parse", "--show-toplevel"], cwd, spec).strip()
    data = _git_bytes(["archive", "--format=tar", revision, "--", inner_path.as_posix()], Path(top), spec)
    with tempfile.TemporaryDirectory(prefix="policy-") as tmp:
        archive = Path(tmp) / "rev.tar"
        archive.write_bytes(data)
        out = Path(tmp) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(out, filter="data")
        yield out / inner_path


def _git_bytes(args: list[str], cwd: Path | None, spec: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False, timeout=60)  # noqa: S603, S607 - fixed git argv, no shell
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PolicyUnreadable([Finding(spec, 0, f"cannot run git: {exc}")]) from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise PolicyUnreadable(
            [Finding(spec, 0, f"git could not read it: {message[-1] if message else 'error'}")]
        )
    return done.stdout


def _git(args: list[str], cwd: Path | None, spec: str) -> str:
    return _git_bytes(args, cwd, spec).decode()


__all__ = ["LevelChange", "VocabularyChange", "concrete_cells", "diff_snapshots", "materialise"]
