"""Comparing two policy snapshots: every cell whose effective level changes, and every other change."""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from gateway.domain import DisclosureLevel
from gateway.errors import Finding
from gateway.policy.index import NOTHING
from gateway.policy.snapshot import PolicySnapshot, PolicyUnreadable
from gateway.policy.vocabulary import Vocabulary
from gateway.redaction import FieldRule, RedactionRules


@dataclass(frozen=True, slots=True)
class LevelChange:
    """One cell whose granted level, or level after review, differs between two snapshots."""

    role: str
    purpose: str
    agency: str
    category: str
    old: DisclosureLevel
    new: DisclosureLevel
    old_by: tuple[str, ...]
    new_by: tuple[str, ...]
    old_review: DisclosureLevel = DisclosureLevel.NONE  # NONE: no review offers more than `old`
    new_review: DisclosureLevel = DisclosureLevel.NONE

    @property
    def widened(self) -> bool:
        """More is granted without review, or more can ever be released (with a reviewer's approval)."""
        return self.new > self.old or max(self.new, self.new_review) > max(self.old, self.old_review)

    @property
    def old_text(self) -> str:
        return _with_review(self.old, self.old_review)

    @property
    def new_text(self) -> str:
        return _with_review(self.new, self.new_review)


def _with_review(level: DisclosureLevel, review: DisclosureLevel) -> str:
    return f"{level.name}, {review.name} after review" if review else level.name


@dataclass(frozen=True, slots=True)
class VocabularyChange:
    """A name added to or removed from one vocabulary."""

    kind: str
    name: str
    added: bool


WIDER, NARROWER, CHANGED = "wider", "narrower", "changed"

# How much of a held value each field operator lets through at PERTINENT, least to most; a rule moving
# up this ladder (drop -> keep) discloses more than before.
_OPERATOR_RANK = {
    "drop": 0,
    "replace": 1,
    "agency_summary": 2,
    "pseudonymise": 2,
    "generalise_date": 3,
    "generalise_postcode": 3,
    "mask": 3,
    "keep": 4,
}


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """A change outside the access matrix (bindings, agreements, roles, purposes, categories, redaction)."""

    area: str  # "binding", "agreement", "agency", "area", "role", "purpose", "category", "redaction"
    subject: str  # the certificate, agreement, agency, area, role, purpose or category concerned
    change: str  # what changed, as a sentence fragment an IG officer can read
    direction: str  # WIDER, NARROWER, or CHANGED when neither can be said in general

    @property
    def widened(self) -> bool:
        return self.direction == WIDER


def _sets(
    area: str, subject: str, what: str, before: Iterable[str], after: Iterable[str], *, more_is_wider: bool = True
) -> list[PolicyChange]:
    """Changes for names added to and removed from one list-valued setting."""
    old, new = set(before), set(after)
    grow, shrink = (WIDER, NARROWER) if more_is_wider else (NARROWER, WIDER)
    found = []
    if new - old:
        found.append(PolicyChange(area, subject, f"{what} gained {', '.join(sorted(new - old))}", grow))
    if old - new:
        found.append(PolicyChange(area, subject, f"{what} lost {', '.join(sorted(old - new))}", shrink))
    return found


def _covering(
    area: str,
    subject: str,
    what: str,
    before: frozenset[str],
    after: frozenset[str],
    within_old: Callable[[str, str], bool],
    within_new: Callable[[str, str], bool],
) -> list[PolicyChange]:
    """Like `_sets`, for lists whose entries cover everything below them (an agreement's purposes).

    An entry gained below one already listed widens nothing; one dropped but still below a listed
    entry narrows nothing. Both are still reported, as rewording.
    """
    gained, lost = after - before, before - after
    wider = sorted(g for g in gained if not any(within_old(g, o) for o in before))
    narrower = sorted(x for x in lost if not any(within_new(x, n) for n in after))
    found = []
    if wider:
        found.append(PolicyChange(area, subject, f"{what} gained {', '.join(wider)}", WIDER))
    if narrower:
        found.append(PolicyChange(area, subject, f"{what} lost {', '.join(narrower)}", NARROWER))
    if set(gained) - set(wider):
        found.append(
            PolicyChange(
                area, subject, f"{what} now lists {', '.join(sorted(gained - set(wider)))} (already covered)", CHANGED
            )
        )
    if set(lost) - set(narrower):
        found.append(
            PolicyChange(
                area,
                subject,
                f"{what} no longer lists {', '.join(sorted(lost - set(narrower)))} (still covered by a wider entry)",
                CHANGED,
            )
        )
    return found


def _named(
    area: str, old: Mapping[str, object], new: Mapping[str, object], added: str, removed: str
) -> tuple[list[PolicyChange], list[str]]:
    """Entries added (WIDER) or removed (NARROWER), and the names present in both."""
    found = [PolicyChange(area, n, added, WIDER) for n in sorted(set(new) - set(old))]
    found += [PolicyChange(area, n, removed, NARROWER) for n in sorted(set(old) - set(new))]
    return found, sorted(set(old) & set(new))


def _binding_changes(old: Vocabulary, new: Vocabulary) -> list[PolicyChange]:
    found = [
        PolicyChange("binding", i, f"new certificate may assert {', '.join(sorted(new.bindings[i]))}", WIDER)
        for i in sorted(set(new.bindings) - set(old.bindings))
    ]
    found += [
        PolicyChange("binding", i, "certificate no longer bound to any role", NARROWER)
        for i in sorted(set(old.bindings) - set(new.bindings))
    ]
    for identity in sorted(set(old.bindings) & set(new.bindings)):
        found += _sets("binding", identity, "roles it may assert", old.bindings[identity], new.bindings[identity])
    return found


def _agreement_changes(old_snapshot: PolicySnapshot, new_snapshot: PolicySnapshot) -> list[PolicyChange]:
    old, new = old_snapshot.vocabulary, new_snapshot.vocabulary
    found, both = _named("agreement", old.agreements, new.agreements, "new agreement", "agreement removed")
    for name in both:
        a, b = old.agreements[name], new.agreements[name]
        found += _sets("agreement", name, "parties", a.parties, b.parties)
        found += _covering(
            "agreement",
            name,
            "purposes",
            a.purposes,
            b.purposes,
            old_snapshot.purpose_within,
            new_snapshot.purpose_within,
        )
        found += _covering(
            "agreement",
            name,
            "categories",
            a.categories,
            b.categories,
            old_snapshot.category_within,
            new_snapshot.category_within,
        )
        for label, before, after, later_is_wider in (
            ("in force from", a.valid_from, b.valid_from, False),
            ("in force until", a.valid_until, b.valid_until, True),
        ):
            if before != after:
                wider = (after > before) == later_is_wider
                found.append(
                    PolicyChange(
                        "agreement",
                        name,
                        f"{label} {before.isoformat()} -> {after.isoformat()}",
                        WIDER if wider else NARROWER,
                    )
                )
        # A cross-area agreement lets a party in one area ask parties in every other area under it.
        found += _flag("agreement", name, "cross_area", a.cross_area, b.cross_area, True)
        if a.title != b.title:
            found.append(PolicyChange("agreement", name, "title changed", CHANGED))
    return found


def _agency_area_changes(old: Vocabulary, new: Vocabulary) -> list[PolicyChange]:
    """An agency moving between areas, or to or from serving the whole partnership."""
    found: list[PolicyChange] = []
    for name in sorted(set(old.agencies) & set(new.agencies)):
        before, after = old.agencies[name].area, new.agencies[name].area
        if before == after:
            continue
        # Without an area an agency asks, and is asked by, every area: losing it widens, gaining it narrows.
        # Moving to another area reaches agencies it could not reach before, so it is flagged for review.
        direction = NARROWER if not before else WIDER
        found.append(PolicyChange("agency", name, f"area {before or '-'} -> {after or '-'}", direction))
    for name in sorted(set(old.areas) & set(new.areas)):
        if old.areas[name].title != new.areas[name].title:
            found.append(PolicyChange("area", name, "title changed", CHANGED))
    return found


def _flag(area: str, name: str, what: str, before: bool, after: bool, true_is_wider: bool) -> list[PolicyChange]:
    if before == after:
        return []
    return [PolicyChange(area, name, f"{what} {before} -> {after}", WIDER if after == true_is_wider else NARROWER)]


def _role_changes(old: Vocabulary, new: Vocabulary) -> list[PolicyChange]:
    found: list[PolicyChange] = []
    for name in sorted(set(old.roles) & set(new.roles)):
        a, b = old.roles[name], new.roles[name]
        if a.agency != b.agency:
            # The home agency decides whose records count as the role's own, and which agreements it
            # can act under: moving it can widen what it sees, so it is flagged for review.
            found.append(PolicyChange("role", name, f"agency {a.agency} -> {b.agency}", WIDER))
        found += _flag("role", name, "inside_mash", a.inside_mash, b.inside_mash, True)
        found += _flag("role", name, "sees_records", a.sees_records, b.sees_records, True)
        if set(a.member_of) != set(b.member_of):
            # Joining or leaving a group brings its grants and its caps alike; the level changes show which.
            before, after = ", ".join(a.member_of) or "-", ", ".join(b.member_of) or "-"
            found.append(PolicyChange("role", name, f"member_of {before} -> {after}", CHANGED))
    return found


def _purpose_changes(old: Vocabulary, new: Vocabulary) -> list[PolicyChange]:
    found: list[PolicyChange] = []
    for name in sorted(set(old.purposes) & set(new.purposes)):
        a, b = old.purposes[name], new.purposes[name]
        if a.parent != b.parent:
            # A new parent changes which grants and agreements cover the purpose (see the level changes).
            found.append(PolicyChange("purpose", name, f"parent {a.parent or '-'} -> {b.parent or '-'}", CHANGED))
        found += _sets("purpose", name, "legal bases", a.legal_bases, b.legal_bases)
        if a.retention != b.retention:
            found.append(
                PolicyChange("purpose", name, f"retention {a.retention or '-'} -> {b.retention or '-'}", CHANGED)
            )
        if a.group != b.group:
            found.append(PolicyChange("purpose", name, f"group {a.group} -> {b.group}", CHANGED))
    return found


def _category_changes(old: Vocabulary, new: Vocabulary) -> list[PolicyChange]:
    found: list[PolicyChange] = []
    for name in sorted(set(old.record_categories) & set(new.record_categories)):
        a, b = old.record_categories[name], new.record_categories[name]
        if a.parent != b.parent:
            found.append(PolicyChange("category", name, f"parent {a.parent} -> {b.parent}", CHANGED))
        found += _flag("category", name, "protected", a.protected, b.protected, False)
        if a.protected and b.protected:
            found += _sets("category", name, "protected readers", a.protected_readers, b.protected_readers)
        fields_before = {f"{k} ({v})" for k, v in a.fields.items()}
        fields_after = {f"{k} ({v})" for k, v in b.fields.items()}
        if fields_before != fields_after:
            # What a record carries, not who sees it; the redaction rules decide what is released.
            found += [
                PolicyChange(c.area, c.subject, c.change, CHANGED)
                for c in _sets("category", name, "fields", fields_before, fields_after)
            ]
    return found


def _rule_key(rule: FieldRule | None) -> tuple[str, dict[str, object]] | None:
    return None if rule is None else (rule.operator, dict(rule.params))


def _rule_text(rule: FieldRule | None) -> str:
    if rule is None:
        return "no rule (withheld)"
    params = ", ".join(f"{k}={v}" for k, v in sorted(rule.params.items()) if k != "operator")
    return f"{rule.operator}({params})" if params else rule.operator


def _redaction_changes(old: RedactionRules, new: RedactionRules) -> list[PolicyChange]:
    # A change to the shared default rules shows once, for every agency it reaches, not once per agency.
    agencies = sorted(old.agencies | new.agencies)
    per_agency: dict[tuple[str, str], list[str]] = {}
    for change in _agency_rule_changes(old, new, agencies):
        per_agency.setdefault((change.change, change.direction), []).append(change.subject)
    found = [
        PolicyChange("redaction", "every agency" if names == agencies else ", ".join(names), text, direction)
        for (text, direction), names in per_agency.items()
    ]
    return found + _safeguarding_changes(old, new)


def _agency_rule_changes(old: RedactionRules, new: RedactionRules, agencies: list[str]) -> list[PolicyChange]:
    found: list[PolicyChange] = []
    for agency in agencies:
        before, after = old.field_rules(agency), new.field_rules(agency)
        for category in sorted(set(before) | set(after)):
            a, b = before.get(category), after.get(category)
            if _rule_key(a) == _rule_key(b):
                continue
            rank_a = -1 if a is None else _OPERATOR_RANK.get(a.operator, 0)
            rank_b = -1 if b is None else _OPERATOR_RANK.get(b.operator, 0)
            direction = WIDER if rank_b > rank_a else NARROWER if rank_b < rank_a else CHANGED
            found.append(
                PolicyChange("redaction", agency, f"{category}: {_rule_text(a)} -> {_rule_text(b)}", direction)
            )
        records_before, records_after = old.record_rules(agency), new.record_rules(agency)
        for category in sorted(set(records_before) | set(records_after)):
            a_op = records_before[category].operator if category in records_before else ""
            b_op = records_after[category].operator if category in records_after else ""
            if a_op != b_op:
                # A whole-record rule (existence only) only ever withholds, so losing one widens.
                direction = WIDER if not b_op else NARROWER if not a_op else CHANGED
                found.append(
                    PolicyChange(
                        "redaction",
                        agency,
                        f"records of {category}: {a_op or 'field rules'} -> {b_op or 'field rules'}",
                        direction,
                    )
                )
    return found


def _safeguarding_changes(old: RedactionRules, new: RedactionRules) -> list[PolicyChange]:
    found: list[PolicyChange] = []
    sa, sb = old.safeguarding, new.safeguarding
    for what, before_set, after_set in (
        ("pseudonymised outside the MASH", sa.pseudonymise_outside_mash, sb.pseudonymise_outside_mash),
        ("handling-code record categories", sa.handling_code_record_categories, sb.handling_code_record_categories),
    ):
        found += _sets("redaction", "safeguarding", what, before_set, after_set, more_is_wider=False)
    for what, before_text, after_text in (
        ("pseudonym domain", sa.pseudonym_domain, sb.pseudonym_domain),
        ("handling code field", sa.handling_code_field, sb.handling_code_field),
        ("handling conditions field", sa.handling_conditions_field, sb.handling_conditions_field),
    ):
        if before_text != after_text:
            found.append(PolicyChange("redaction", "safeguarding", f"{what} {before_text} -> {after_text}", CHANGED))
    return found


def diff_settings(old: PolicySnapshot, new: PolicySnapshot) -> list[PolicyChange]:
    """Every change outside the access matrix: bindings, agreements, agencies' areas, role and purpose
    attributes, category protection and fields, and redaction rules, each marked wider, narrower or changed."""
    a, b = old.vocabulary, new.vocabulary
    return (
        _binding_changes(a, b)
        + _agreement_changes(old, new)
        + _agency_area_changes(a, b)
        + _role_changes(a, b)
        + _purpose_changes(a, b)
        + _category_changes(a, b)
        + _redaction_changes(old.redaction, new.redaction)
    )


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


def diff_snapshots(old: PolicySnapshot, new: PolicySnapshot) -> tuple[list[LevelChange], list[VocabularyChange]]:
    """Level changes over the union of both snapshots' cells, and vocabulary names added or removed."""
    changes: list[LevelChange] = []
    seen: set[tuple[str, str, str, str]] = set()
    for cells in (concrete_cells(old), concrete_cells(new)):
        for cell in cells:
            if cell in seen:
                continue
            seen.add(cell)
            role, purpose, agency, category = cell
            before = old.decide(role, purpose, agency, category) if category in old.record_categories else NOTHING
            after = new.decide(role, purpose, agency, category) if category in new.record_categories else NOTHING
            if before.level != after.level or before.review != after.review:
                changes.append(
                    LevelChange(
                        role,
                        purpose,
                        agency,
                        category,
                        before.level,
                        after.level,
                        (*before.allowed_by, *before.denied_by, *before.reviewed_by),
                        (*after.allowed_by, *after.denied_by, *after.reviewed_by),
                        before.review,
                        after.review,
                    )
                )
    vocab_changes: list[VocabularyChange] = []
    for kind in (
        "areas",
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
        raise PolicyUnreadable([Finding(spec, 0, "the path after ':' must be relative to the repository root")])
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
        raise PolicyUnreadable([Finding(spec, 0, f"git could not read it: {message[-1] if message else 'error'}")])
    return done.stdout


def _git(args: list[str], cwd: Path | None, spec: str) -> str:
    return _git_bytes(args, cwd, spec).decode()


__all__ = [
    "CHANGED",
    "NARROWER",
    "WIDER",
    "LevelChange",
    "PolicyChange",
    "VocabularyChange",
    "concrete_cells",
    "diff_settings",
    "diff_snapshots",
    "materialise",
]
