"""Reading the per-agency Casbin policy files into validated, line-numbered policy lines."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from gateway.domain import DisclosureLevel
from gateway.errors import Finding
from gateway.policy.casbin_model import AGENCY, CATEGORY, PURPOSE, ROLE
from gateway.policy.sources import CsvRow, Location, SourceError, read_csv_rows
from gateway.policy.vocabulary import Vocabulary

AGENCY_DIR = "agencies"
ANY = "*"


class Effect(enum.Enum):
    """What a policy line does at its level: grant it, forbid it (and above), or grant it after review.

    A review line offers its level only once a reviewer of the owning agency approves; until then the
    caller gets what the allow and deny lines give.
    """

    ALLOW = "allow"
    DENY = "deny"
    REVIEW = "review"


@dataclass(frozen=True, slots=True)
class PolicyLine:
    """One validated `p` line: names without prefixes, ``*`` for "any" (deny lines only)."""

    file: str
    line: int
    role: str
    agency: str
    category: str
    purpose: str
    level: DisclosureLevel
    effect: Effect

    @property
    def location(self) -> Location:
        return Location(self.file, self.line)

    @property
    def where(self) -> str:
        return str(self.location)

    def casbin_row(self) -> tuple[str, str, str, str, str, str]:
        return (
            ROLE + self.role,
            AGENCY + self.agency,
            CATEGORY + self.category,
            PURPOSE + self.purpose,
            self.level.name,
            self.effect.value,
        )

    def enforcer_row(self) -> tuple[str, str, str, str, str, str]:
        """The row Casbin enforces: a review line forbids its level until approved, so Casbin sees a deny."""
        row = self.casbin_row()
        return (*row[:5], Effect.DENY.value) if self.effect is Effect.REVIEW else row

    def text(self) -> str:
        return "p, " + ", ".join(self.casbin_row())


def _strip(cell: str, prefix: str, what: str, row: CsvRow, findings: list[Finding]) -> str | None:
    if not cell.startswith(prefix):
        findings.append(Finding(row.file, row.line, f"{what} must be written {prefix}<name>, got {cell!r}"))
        return None
    return cell[len(prefix) :]


def parse_line(
    row: CsvRow, agency_of_file: str, vocab: Vocabulary, findings: list[Finding]
) -> PolicyLine | None:
    """Validate one row of an agency's policy file; append findings and return None if it is unusable."""
    before = len(findings)
    if row.cells[0] != "p":
        findings.append(
            Finding(
                row.file,
                row.line,
                f"only 'p' lines belong in an agency policy file (got "
                f"{row.cells[0]!r}); hierarchies are declared in the vocabulary files",
            )
        )
        return None
    if len(row.cells) != 7:
        findings.append(
            Finding(
                row.file,
                row.line,
                "a policy line has 7 cells: p, role:<role>, agency:<agency>, "
                f"cat:<category>, purpose:<purpose>, <LEVEL>, allow|deny|review (got {len(row.cells)})",
            )
        )
        return None
    _, role_cell, agency_cell, cat_cell, purpose_cell, level_cell, effect_cell = row.cells
    role = _strip(role_cell, ROLE, "the role", row, findings)
    agency = _strip(agency_cell, AGENCY, "the agency", row, findings)
    category = _strip(cat_cell, CATEGORY, "the category", row, findings)
    purpose = _strip(purpose_cell, PURPOSE, "the purpose", row, findings)
    effect: Effect | None = None
    try:
        effect = Effect(effect_cell)
    except ValueError:
        findings.append(Finding(row.file, row.line, f"the effect must be allow, deny or review, got {effect_cell!r}"))
    level: DisclosureLevel | None = None
    try:
        level = DisclosureLevel.parse(level_cell)
        if level_cell != level.name:
            raise ValueError(level_cell)
        if level is DisclosureLevel.NONE:
            findings.append(
                Finding(
                    row.file,
                    row.line,
                    "level NONE grants nothing; write a deny line at EXISTS to withhold even existence",
                )
            )
    except ValueError:
        findings.append(
            Finding(row.file, row.line, f"the level must be EXISTS, PERTINENT or FULL, got {level_cell!r}")
        )
    if role is not None:
        if role == ANY:
            if effect is not Effect.DENY:
                findings.append(
                    Finding(
                        row.file,
                        row.line,
                        "'role:*' is only allowed in deny lines; a grant or review names the role it is for",
                    )
                )
        elif role not in vocab.roles:
            findings.append(Finding(row.file, row.line, vocab.unknown("role", role, vocab.roles)))
    if purpose is not None:
        if purpose == ANY:
            if effect is not Effect.DENY:
                findings.append(
                    Finding(
                        row.file,
                        row.line,
                        "'purpose:*' is only allowed in deny lines; a grant or review names the purpose it is for",
                    )
                )
        elif purpose not in vocab.purposes:
            findings.append(Finding(row.file, row.line, vocab.unknown("purpose", purpose, vocab.purposes)))
    if agency is not None:
        if agency not in vocab.agencies:
            findings.append(Finding(row.file, row.line, vocab.unknown("agency", agency, vocab.agencies)))
        elif agency != agency_of_file:
            findings.append(
                Finding(
                    row.file,
                    row.line,
                    f"this file holds {agency_of_file}'s rules; a line about "
                    f"{agency!r} belongs in {AGENCY_DIR}/{agency}.csv",
                )
            )
    if category is not None:
        known = vocab.record_categories.get(category)
        if known is None:
            findings.append(
                Finding(
                    row.file,
                    row.line,
                    "rule can never match: " + vocab.unknown("category", category, vocab.record_categories),
                )
            )
        elif agency is not None and known.agency != agency:
            findings.append(
                Finding(
                    row.file,
                    row.line,
                    f"rule can never match: category {category!r} belongs to {known.agency}, not {agency}",
                )
            )
    if len(findings) > before:
        return None
    assert role is not None
    assert agency is not None
    assert category is not None
    assert purpose is not None
    assert level is not None
    assert effect is not None
    return PolicyLine(row.file, row.line, role, agency, category, purpose, level, effect)


def load_lines(
    directory: Path,
    vocab: Vocabulary,
    findings: list[Finding],
    unreadable: list[Finding] | None = None,
) -> list[PolicyLine]:
    """Every valid policy line of every agency file, in file then line order; problems go to `findings`.

    Files that cannot be read at all are also listed in `unreadable`.
    """
    unreadable = unreadable if unreadable is not None else []
    folder = directory / AGENCY_DIR
    if not folder.is_dir():
        findings.append(Finding(AGENCY_DIR, 0, "the folder of agency policy files is missing"))
        unreadable.append(findings[-1])
        return []
    lines: list[PolicyLine] = []
    seen: dict[tuple[str, ...], str] = {}
    for path in sorted(folder.iterdir()):
        rel = f"{AGENCY_DIR}/{path.name}"
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix != ".csv":
            findings.append(Finding(rel, 0, "only <agency>.csv files belong in this folder"))
            continue
        agency = path.stem
        if ("agency", agency) in vocab.malformed:
            continue  # its entry in agencies.yaml is reported; every line here would only echo that
        if agency not in vocab.agencies or not vocab.agencies[agency].holds_records:
            findings.append(
                Finding(
                    rel,
                    0,
                    f"{agency!r} is not an agency that holds records; name the file "
                    "after the agency whose records it governs",
                )
            )
            continue
        try:
            rows = list(read_csv_rows(path, rel))
        except SourceError as exc:
            findings.append(exc.finding)
            unreadable.append(exc.finding)
            continue
        for row in rows:
            parsed = parse_line(row, agency, vocab, findings)
            if parsed is None:
                continue
            key = parsed.casbin_row()
            if key in seen:
                findings.append(Finding(row.file, row.line, f"duplicate of {seen[key]}"))
                continue
            seen[key] = parsed.where
            lines.append(parsed)
    return lines
