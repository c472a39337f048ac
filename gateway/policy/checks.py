"""`policy check`'s findings on a loaded snapshot: dead or over-broad rules, gaps and expiring agreements.

Errors here block activation on reload (a line granting more than any agreement covers; a protected
category disclosed beyond its readers); warnings are reported but do not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import product
from pathlib import Path

from gateway.domain import DisclosureLevel
from gateway.errors import Finding
from gateway.policy.casbin_model import MODEL_FILE, enforce_level
from gateway.policy.diff import concrete_cells
from gateway.policy.index import level_of
from gateway.policy.rules import Effect, PolicyLine
from gateway.policy.snapshot import PolicySnapshot, ensure_unchanged, load_parts, read_consistently

EXPIRY_WARNINGS = (timedelta(days=30), timedelta(days=60))
"""How far ahead `policy check` warns that an agreement ends: the nearest threshold it falls within is named."""
WARNING = "warning"


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Everything `policy check` found in one run: loading problems and lint findings, by file and line."""

    version: str
    lines: int  # policy lines that loaded
    findings: tuple[Finding, ...]
    snapshot: PolicySnapshot  # only the parts that loaded when a finding blocks; never serve from it


def check_directory(directory: Path, today: date) -> CheckReport:
    """Load every part of a policy that can be loaded and lint it, so that one typo hides no other finding.

    PolicyUnreadable when a file is missing or cannot be parsed at all.
    """
    directory = Path(directory)
    with read_consistently(directory) as (copy, version):
        parts = load_parts(copy, version, directory)
    ensure_unchanged(directory, version)
    found = [*parts.findings, *lint(parts.snapshot, today, redaction_gaps=parts.redaction_loaded)]
    return CheckReport(
        version,
        len(parts.snapshot.lines),
        tuple(sorted(found, key=lambda f: (f.file, f.line, f.message))),
        parts.snapshot,
    )


def lint(snapshot: PolicySnapshot, today: date, *, redaction_gaps: bool = True) -> list[Finding]:
    """Every finding about a snapshot that loading alone does not catch, sorted by file and line."""
    found = (
        _shadowed_lines(snapshot)
        + _beyond_agreements(snapshot, today)
        + _protected_exposure(snapshot)
        + _existence_names_protected(snapshot)
        + _grants_to_roles_without_records(snapshot)
        + (_redaction_gaps(snapshot) if redaction_gaps else [])
        + _unassertable_roles(snapshot)
        + _purposes_without_basis(snapshot)
        + _agreement_expiry(snapshot, today)
        + _agreements_spanning_areas(snapshot)
        + _review_lines(snapshot)
    )
    return sorted(found, key=lambda f: (f.file, f.line, f.message))


def _concrete(snapshot: PolicySnapshot, line: PolicyLine) -> tuple[list[str], list[str], list[str]]:
    index, vocab = snapshot.index, snapshot.vocabulary
    roles = [r for r in index.role_descendants.get(line.role, ()) if not vocab.roles[r].group]
    purposes = [p for p in index.purpose_descendants.get(line.purpose, ()) if not vocab.purposes[p].group]
    categories = [
        c for c in index.category_descendants.get(line.category, ()) if not vocab.record_categories[c].group
    ]
    return roles, purposes, categories


def _shadowed_lines(snapshot: PolicySnapshot) -> list[Finding]:
    """Allow lines that never take effect at their own level: a deny caps every request they match."""
    found = []
    cells = snapshot.index.cells
    for line in snapshot.lines:
        if line.effect is not Effect.ALLOW:
            continue
        roles, purposes, categories = _concrete(snapshot, line)
        if not (roles and purposes and categories):
            found.append(
                Finding(
                    line.file,
                    line.line,
                    "rule can never match: no assertable role, citable "
                    "purpose and record category fall under it",
                    WARNING,
                )
            )
            continue
        caps = [cells[(r, p, c)][2] for r, p, c in product(roles, purposes, categories)]
        if all(cap <= line.level for cap in caps):
            best = max(cap - 1 for cap in caps)
            found.append(
                Finding(
                    line.file,
                    line.line,
                    f"rule is shadowed by a deny: it never grants "
                    f"{line.level.name} (at most {DisclosureLevel(max(best, 0)).name})",
                    WARNING,
                )
            )
    return found


def _review_lines(snapshot: PolicySnapshot) -> list[Finding]:
    """Review lines nobody can decide (no reviewer role for the agency), or that never offer more than is granted."""
    vocab, index = snapshot.vocabulary, snapshot.index
    found = []
    for line in snapshot.lines:
        if line.effect is not Effect.REVIEW:
            continue
        if not any(r.reviews == "first" and r.agency == line.agency for r in vocab.roles.values()):
            found.append(
                Finding(
                    line.file,
                    line.line,
                    f"no role reviews for {line.agency}: declare one with `reviews: first` in "
                    "vocabulary/roles.yaml, or requests under this line would wait for nobody",
                )
            )
        roles, purposes, categories = _concrete(snapshot, line)
        if not any(
            index.decisions.get((r, p, c)) is not None and line.where in index.decisions[(r, p, c)].reviewed_by
            for r, p, c in product(roles, purposes, categories)
        ):
            found.append(
                Finding(
                    line.file,
                    line.line,
                    f"review line never offers {line.level.name}: a deny caps it wherever it matches",
                    WARNING,
                )
            )
    return found


@dataclass(frozen=True, slots=True)
class _Coverage:
    """One agreement's reach beside its categories: its parties, and every purpose under its purposes."""

    name: str
    parties: frozenset[str]
    purposes: frozenset[str]


def _covered(snapshot: PolicySnapshot) -> Callable[[str, str, str], frozenset[str]]:
    """The agreements covering a (requesting agency, purpose, category) triple, as a lookup.

    Indexed by category rather than by triple: an agreement among many parties (a pan-London one) covers
    parties × purposes × categories triples, millions of them at 32 boroughs, where the agreements covering
    any one category are a handful.
    """
    index, vocab = snapshot.index, snapshot.vocabulary
    by_category: dict[str, list[_Coverage]] = {}
    for agreement in vocab.agreements.values():
        reach = _Coverage(agreement.name, frozenset(agreement.parties),
                          frozenset(d for p in agreement.purposes for d in index.purpose_descendants.get(p, ())))
        categories = {
            d
            for c in agreement.categories
            for d in index.category_descendants.get(c, ())
            if vocab.record_categories[d].agency in agreement.parties
        }
        for category in categories:
            by_category.setdefault(category, []).append(reach)

    def names(agency: str, purpose: str, category: str) -> frozenset[str]:
        return frozenset(a.name for a in by_category.get(category, ())
                         if agency in a.parties and purpose in a.purposes)

    return names


def _beyond_agreements(snapshot: PolicySnapshot, today: date) -> list[Finding]:
    """Allow lines that decide a disclosure no agreement covers (an error), or only agreements that have ended.

    Expiry is an expected event, not a broken policy: each request is refused unless the agreement it cites is
    in force and covers it, so a line only ended agreements cover grants nothing. It is a warning naming them,
    and the gateway keeps serving (and reloading) the rest of the policy.
    """
    vocab = snapshot.vocabulary
    covered = _covered(snapshot)
    first_gap: dict[PolicyLine, tuple[str, str, str, frozenset[str]]] = {}
    for (role, purpose, category), cell in snapshot.index.cells.items():
        if level_of(cell) is DisclosureLevel.NONE or vocab.roles[role].group or vocab.purposes[purpose].group:
            continue
        if vocab.record_categories[category].group:
            continue
        names = covered(vocab.roles[role].agency, purpose, category)
        if any(vocab.agreements[n].valid_until >= today for n in names):
            continue
        for line in cell[1]:
            known = first_gap.get(line)
            if known is None or (known[3] and not names):  # a gap no agreement ever covered outranks expiry
                first_gap[line] = (role, purpose, category, names)
    found = []
    for line, (role, purpose, category, ended) in first_gap.items():
        seeing = f"{role} ({vocab.roles[role].agency}) seeing {category} for {purpose}"
        if ended:
            listed = ("agreements " if len(ended) > 1 else "agreement ") + ", ".join(repr(n) for n in sorted(ended))
            found.append(line.location.finding(
                f"rule relies on ended {listed} only: requests for {seeing} are refused until an agreement in "
                "force covers them", WARNING))
        else:
            found.append(line.location.finding(
                f"rule grants more than any agreement allows: no agreement covers {seeing}"))
    return found


def _protected_exposure(snapshot: PolicySnapshot) -> list[Finding]:
    """Protected categories disclosed above EXISTS to anyone who is not one of their readers.

    Reported at each allow line that grants it (categories below a protected one are protected too,
    as the vocabulary loader passes protection down).
    """
    vocab = snapshot.vocabulary
    exposed: dict[tuple[PolicyLine, str, DisclosureLevel], dict[str, list[str]]] = {}
    for (role, purpose, name), cell in snapshot.index.cells.items():
        category = vocab.record_categories[name]
        if not category.protected or role in category.protected_readers or vocab.roles[role].group:
            continue
        level = level_of(cell)
        if vocab.purposes[purpose].group or level <= DisclosureLevel.EXISTS:
            continue  # a group purpose is reported for each purpose below it that a request can cite
        for line in cell[1]:
            exposed.setdefault((line, name, level), {}).setdefault(role, []).append(purpose)
    found = []
    for (line, name, level), roles in exposed.items():
        category = vocab.record_categories[name]
        found.append(
            line.location.finding(
                f"protected category {name} (declared at {vocab.where('category', name)}) is disclosed at "
                f"{level.name} to {_who(roles)}; only "
                f"{', '.join(category.protected_readers) or 'its readers'} may see more than EXISTS",
            )
        )
    return found


def _who(roles: dict[str, list[str]]) -> str:
    return "; ".join(f"{role} for {', '.join(sorted(purposes))}" for role, purposes in sorted(roles.items()))


def _existence_names_protected(snapshot: PolicySnapshot) -> list[Finding]:
    """Protected categories at EXISTS for a role that sees every other category it may know of with content.

    Existence is answered for the whole agency, so "known, but no records" would then name the
    protected service; one finding per allow line that grants that EXISTS, naming the roles.
    """
    vocab, index = snapshot.vocabulary, snapshot.index
    held: dict[str, list[str]] = {}
    for declared in vocab.record_categories.values():
        if not declared.group:
            held.setdefault(declared.agency, []).append(declared.name)
    exposed: dict[tuple[PolicyLine, str], dict[str, list[str]]] = {}
    for (role, purpose), per_agency in index.by_query.items():
        if vocab.roles[role].group or vocab.purposes[purpose].group:
            continue
        for agency, decisions in per_agency.items():
            protected_exists = [
                c
                for c in held.get(agency, ())
                if decisions[c].level is DisclosureLevel.EXISTS
                and vocab.record_categories[c].protected
                and role not in vocab.record_categories[c].protected_readers
            ]
            if not protected_exists or any(
                decisions[c].level is DisclosureLevel.EXISTS and not vocab.record_categories[c].protected
                for c in held[agency]
            ):
                continue
            for category in protected_exists:
                for line in index.cells[(role, purpose, category)][1]:
                    exposed.setdefault((line, category), {}).setdefault(role, []).append(purpose)
    found = []
    for (line, category), roles in exposed.items():
        agency = vocab.record_categories[category].agency
        found.append(
            line.location.finding(
                f"existence names protected category {category}: this rule lets roles know of it at EXISTS "
                f"while they see every other {agency} category they may know of with content ({_who(roles)}), "
                f"so \"known, but no records\" can only mean {category}; cap it at NONE for them "
                "(a deny at EXISTS)",
            )
        )
    return found


def _grants_to_roles_without_records(snapshot: PolicySnapshot) -> list[Finding]:
    """Allow lines that reach a role marked `sees_records: false`, directly or through a group."""
    vocab = snapshot.vocabulary
    found = []
    for line in snapshot.lines:
        if line.effect is not Effect.ALLOW:
            continue
        reached = [
            r
            for r in snapshot.index.role_descendants.get(line.role, ())
            if r in vocab.roles and not vocab.roles[r].sees_records
        ]
        if reached:
            via = "" if reached == [line.role] else f" (through {line.role})"
            found.append(
                Finding(
                    line.file,
                    line.line,
                    f"rule grants {line.level.name} to {', '.join(reached)}{via}, which must never see "
                    "records (sees_records: false in vocabulary/roles.yaml)",
                )
            )
    return found


def _redaction_gaps(snapshot: PolicySnapshot) -> list[Finding]:
    """Field categories an agency holds that have no redaction rule (they will always be withheld)."""
    vocab = snapshot.vocabulary
    rules = snapshot.redaction
    found = []
    seen: set[tuple[str, str]] = set()
    for category in vocab.record_categories.values():
        for field_name, field_category in category.fields.items():
            key = (category.agency, field_category)
            if key in seen or rules.covers(category.agency, field_category):
                continue
            seen.add(key)
            where = vocab.where("category", category.name)
            found.append(
                where.finding(
                    f"{category.agency} holds {field_category} (field {field_name} "
                    f"of {category.name}) but redaction.yaml has no rule for it, so it is always "
                    "withheld at PERTINENT",
                    WARNING,
                )
            )
    return found


def _unassertable_roles(snapshot: PolicySnapshot) -> list[Finding]:
    vocab = snapshot.vocabulary
    bound = {r for roles in vocab.bindings.values() for r in roles}
    found = []
    for role in vocab.roles.values():
        if not role.group and role.name not in bound:
            where = vocab.where("role", role.name)
            found.append(
                where.finding(
                    f"no certificate may assert role {role.name!r} (add it to bindings.yaml or remove it)",
                    WARNING,
                )
            )
    return found


def _purposes_without_basis(snapshot: PolicySnapshot) -> list[Finding]:
    vocab = snapshot.vocabulary
    found = []
    for purpose in vocab.purposes.values():
        if not purpose.group and not purpose.legal_bases:
            where = vocab.where("purpose", purpose.name)
            found.append(
                where.finding(
                    f"purpose {purpose.name!r} has no legal basis, so no request "
                    "can cite it (list its legal_bases, or mark it `group: true`)",
                    WARNING,
                )
            )
    return found


def _agreement_expiry(snapshot: PolicySnapshot, today: date) -> list[Finding]:
    """A warning for each agreement that has ended (sharing under it is refused) or ends within 60 or 30 days."""
    vocab = snapshot.vocabulary
    found = []
    for agreement in vocab.agreements.values():
        where = vocab.where("agreement", agreement.name)
        ends = agreement.valid_until.isoformat()
        if agreement.valid_until < today:
            found.append(where.finding(f"agreement {agreement.name!r} expired on {ends}; requests citing it are "
                                       "refused", WARNING))
            continue
        within = [ahead for ahead in EXPIRY_WARNINGS if agreement.valid_until - today <= ahead]
        if within:
            found.append(where.finding(f"agreement {agreement.name!r} expires on {ends}, within {within[0].days} "
                                       "days; renew it or requests citing it will be refused", WARNING))
    return found


def _agreements_spanning_areas(snapshot: PolicySnapshot) -> list[Finding]:
    """An error for each agreement not marked `cross_area: true` whose parties serve more than one area.

    The gateway never lets one area's party ask another area's under such an agreement, so its text would
    promise sharing that never happens; the signatories must say which of the two they meant.
    """
    vocab = snapshot.vocabulary
    found = []
    for agreement in vocab.agreements.values():
        if agreement.cross_area:
            continue
        areas = sorted({snapshot.area_of(p) for p in agreement.parties} - {""})
        if len(areas) > 1:
            found.append(vocab.where("agreement", agreement.name).finding(
                f"agreement {agreement.name!r} has parties in {len(areas)} areas ({', '.join(areas)}) but is not "
                "a cross-area agreement; mark it `cross_area: true` or keep its parties to one area"))
    return found


def expiring_agreements(snapshot: PolicySnapshot, today: date,
                        ahead: timedelta = EXPIRY_WARNINGS[-1]) -> dict[str, date]:
    """Agreements that end within `ahead` of `today` (not those already ended), with their last day."""
    return {a.name: a.valid_until for a in snapshot.vocabulary.agreements.values()
            if today <= a.valid_until <= today + ahead}


def verify_against_casbin(snapshot: PolicySnapshot, limit: int) -> list[Finding]:
    """Compare up to `limit` cells (spread evenly) with Casbin's enforce(); findings for any disagreement."""
    cells = list(concrete_cells(snapshot))
    step = max(1, len(cells) // max(limit, 1))
    enforcer = snapshot.enforcer()
    found = []
    for role, purpose, agency, category in cells[::step][:limit]:
        want = enforce_level(enforcer, role, purpose, agency, category)
        have = snapshot.decide(role, purpose, agency, category).level
        if want != have:
            found.append(
                Finding(
                    MODEL_FILE,
                    0,
                    f"decision index gives {have.name} but Casbin gives "
                    f"{want.name} for {role}, {purpose}, {agency}, {category}",
                )
            )
    return found


def is_blocking(finding: Finding) -> bool:
    """True for findings that must stop a snapshot being activated."""
    return finding.severity != WARNING


__all__ = [
    "EXPIRY_WARNINGS",
    "WARNING",
    "CheckReport",
    "check_directory",
    "expiring_agreements",
    "is_blocking",
    "lint",
    "verify_against_casbin",
]
