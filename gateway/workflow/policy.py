"""The workflow policy read from `policies/workflow.yaml`: ratings, their meanings, per-step deadlines, working time.

Ratings and deadlines are policy, not code: each MASH (children's, adults') names its own ratings and
decisions, and every problem is reported as a Finding at file:line so `policy check` can show it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from pathlib import Path

from gateway.errors import Finding, PolicyError
from gateway.policy.sources import LineDict, LineList, SourceError, load_yaml
from gateway.policy.vocabulary import SUBJECT_KINDS, Vocabulary
from gateway.workflow.calendar import WEEKDAYS, WorkingCalendar

FILE_NAME = "workflow.yaml"
STEPS = ("research", "decision")
PERMISSIONS = ("submit", "view", "view_content", "screen", "rate", "research", "decide", "close", "withdraw",
               "merge", "purge")
_SCREENING_KEYS = ("acts_as", "user", "role", "purpose", "legal_basis", "agreement")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SUBJECTS = SUBJECT_KINDS


@dataclass(frozen=True, slots=True)
class Rating:
    """One rating of a MASH (e.g. Red): what it means and its working-hour target per step (None: no target)."""

    name: str
    level: str
    meaning: str
    deadlines: Mapping[str, float]  # step → working hours from the rating; a missing step has no target

    def hours(self, step: str) -> float | None:
        return self.deadlines.get(step)


@dataclass(frozen=True, slots=True)
class PackageBasis:
    """The purpose, legal basis and agreement under which a receiving role's package is gathered."""

    purpose: str
    legal_basis: str
    agreement: str


@dataclass(frozen=True, slots=True)
class Decision:
    """An outcome a MASH may decide, and the operational role that receives the pertinent information."""

    name: str
    meaning: str
    receiving_role: str = ""  # empty: nothing is routed (e.g. no further action)
    package: PackageBasis | None = None  # how the receiver's pertinent-information package is asked for


@dataclass(frozen=True, slots=True)
class OwnerNotification:
    """An agency asks to be told when its information in these categories is disclosed."""

    agency: str
    categories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ScreeningIdentity:
    """Whom the gateway acts as when it runs the open-case check on arrival (audited as that caller)."""

    acts_as: str  # a certificate identity bound to `role` in bindings.yaml
    user: str
    role: str
    purpose: str
    legal_basis: str
    agreement: str


@dataclass(frozen=True, slots=True)
class MashRules:
    """The ratings and decisions of one MASH (children's or adults')."""

    name: str
    subject: str  # "child" or "adult"
    # Run the open-case check for the subject's kind on arrival: children's social care's for a child, adult
    # social care's for an adult at risk (the category the vocabulary marks `open_cases` for that kind).
    screen_open_case: bool
    ratings: Mapping[str, Rating]
    decisions: Mapping[str, Decision]
    screening: ScreeningIdentity | None = None  # whom the check runs as (the MASH's own, or the default)


@dataclass(frozen=True, slots=True)
class WorkflowPolicy:
    """Everything `workflow.yaml` says."""

    calendar: WorkingCalendar
    mashes: Mapping[str, MashRules]
    retention_days: int
    concern_categories: frozenset[str]
    permissions: Mapping[str, frozenset[str]]  # permission → roles that hold it
    receivers: Mapping[str, str]  # agency → certificate identity that receives its notices
    screening: ScreeningIdentity | None = None
    owner_notifications: tuple[OwnerNotification, ...] = ()
    file: str = FILE_NAME

    def allows(self, role: str, permission: str) -> bool:
        return role in self.permissions.get(permission, frozenset())

    def due(self, mash: str, rating: str, step: str, rated_at: datetime) -> datetime | None:
        """When `step` of a referral rated `rating` at `rated_at` is due, or None when the rating has no target."""
        hours = self.mashes[mash].ratings[rating].hours(step)
        return None if hours is None else self.calendar.add_working_hours(rated_at, hours)


class _Reader:
    """Collects findings while turning the YAML document into a WorkflowPolicy."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.findings: list[Finding] = []

    def bad(self, line: int, message: str) -> None:
        self.findings.append(Finding(self.file, line, message))

    def mapping(self, parent: LineDict, key: str, *, required: bool = True) -> LineDict:
        value = parent.get(key)
        line = parent.key_lines.get(key, parent.line)
        if value is None:
            if required:
                self.bad(line, f"'{key}' is required")
            empty = LineDict()
            empty.line, empty.key_lines = line, {}
            return empty
        if not isinstance(value, LineDict):
            self.bad(line, f"'{key}' must be a mapping")
            empty = LineDict()
            empty.line, empty.key_lines = line, {}
            return empty
        return value

    def name(self, value: object, line: int, what: str) -> str:
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            self.bad(line, f"{what} must be a lower-case name (letters, digits, _)")
            return ""
        return value

    def clock_time(self, value: object, line: int, what: str) -> time | None:
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 09:00 as sexagesimal minutes.
            return time(value // 60, value % 60) if 0 <= value < 24 * 60 else None
        try:
            return time.fromisoformat(str(value))
        except ValueError:
            self.bad(line, f"{what} must be a time such as \"09:00\"")
            return None

    def hours(self, value: object, line: int, what: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 24 * 365:
            self.bad(line, f"{what} must be a positive number of working hours")
            return None
        return float(value)


def _calendar(r: _Reader, doc: LineDict) -> WorkingCalendar:
    cal = r.mapping(doc, "calendar")
    default = WorkingCalendar()
    timezone = cal.get("timezone", default.timezone)
    try:
        WorkingCalendar(timezone=str(timezone))
    except (ValueError, KeyError):
        r.bad(cal.key_lines.get("timezone", cal.line), "timezone must be an IANA zone such as Europe/London")
        timezone = default.timezone
    hours = r.mapping(cal, "working_hours")
    start = r.clock_time(hours.get("start", "09:00"), hours.key_lines.get("start", hours.line), "start")
    end = r.clock_time(hours.get("end", "17:00"), hours.key_lines.get("end", hours.line), "end")
    if start and end and end <= start:
        r.bad(hours.line, "working hours must end after they start")
        start = end = None
    days = cal.get("working_days", list(WEEKDAYS[:5]))
    if not isinstance(days, list) or not days or any(d not in WEEKDAYS for d in days):
        r.bad(cal.key_lines.get("working_days", cal.line), f"working_days must list some of {', '.join(WEEKDAYS)}")
        days = list(WEEKDAYS[:5])
    holidays = cal.get("bank_holidays", [])
    parsed: list[date] = []
    if not isinstance(holidays, list):
        r.bad(cal.key_lines.get("bank_holidays", cal.line), "bank_holidays must be a list of dates")
        holidays = []
    for i, item in enumerate(holidays):
        if isinstance(item, date) and not isinstance(item, datetime):
            parsed.append(item)
        else:
            line = holidays.line_of(i) if isinstance(holidays, LineList) else cal.line_of("bank_holidays")
            r.bad(line, "each bank holiday must be a date (YYYY-MM-DD)")
    return WorkingCalendar.of(timezone=str(timezone), start=start or default.day_start,
                              end=end or default.day_end, days=days, holidays=parsed)


def _ratings(r: _Reader, mash: LineDict) -> dict[str, Rating]:
    ratings: dict[str, Rating] = {}
    section = r.mapping(mash, "ratings")
    for name, body in section.items():
        line = section.key_lines[name]
        if not r.name(name, line, "a rating"):
            continue
        if not isinstance(body, LineDict):
            r.bad(line, f"rating {name!r} must be a mapping with meaning and deadlines")
            continue
        meaning = body.get("meaning")
        if not isinstance(meaning, str) or not meaning.strip():
            r.bad(body.line, f"rating {name!r} needs a meaning")
        deadlines = body.get("deadlines", {})
        found: dict[str, float] = {}
        if not isinstance(deadlines, dict):
            r.bad(body.key_lines.get("deadlines", body.line), "deadlines must map steps to working hours")
        else:
            dlines = getattr(deadlines, "key_lines", {})
            for step, hours in deadlines.items():
                step_line = dlines.get(step, body.line)
                if step not in STEPS:
                    r.bad(step_line, f"unknown step {step!r}; steps are {', '.join(STEPS)}")
                elif (value := r.hours(hours, step_line, f"the {step} deadline")) is not None:
                    found[step] = value
            if "research" in found and "decision" in found and found["decision"] < found["research"]:
                r.bad(body.line, f"rating {name!r}: the decision cannot be due before the research")
        ratings[name] = Rating(name, str(body.get("level", "")), str(meaning or ""), found)
    if not ratings:
        r.bad(section.line, "a MASH needs at least one rating")
    return ratings


def _decisions(r: _Reader, mash: LineDict, roles: Collection[str] | None) -> dict[str, Decision]:
    decisions: dict[str, Decision] = {}
    section = r.mapping(mash, "decisions")
    for name, body in section.items():
        line = section.key_lines[name]
        if not r.name(name, line, "a decision"):
            continue
        body = body if isinstance(body, dict) else {}
        role = str(body.get("receiving_role", "") or "")
        if role and roles is not None and role not in roles:
            r.bad(line, f"decision {name!r} routes to undeclared role {role!r}")
        package = body.get("package")
        basis = None
        if package is not None:
            keys = ("purpose", "legal_basis", "agreement")
            if not role or not isinstance(package, dict) or not all(isinstance(package.get(k), str) for k in keys):
                r.bad(line, f"decision {name!r}: a package needs a receiving_role and purpose, legal_basis, "
                            "agreement")
            else:
                basis = PackageBasis(*(str(package[k]) for k in keys))
        decisions[name] = Decision(name, str(body.get("meaning", "")), role, basis)
    if not decisions:
        r.bad(section.line, "a MASH needs at least one decision")
    return decisions


def parse_workflow(doc: LineDict, *, file: str = FILE_NAME, roles: Collection[str] | None = None,
                   agencies: Collection[str] | None = None,
                   categories: Collection[str] | None = None,
                   open_cases: Mapping[str, str] | None = None) -> tuple[WorkflowPolicy | None, list[Finding]]:
    """Read a workflow policy; given the main policy's roles, agencies, categories and open-case categories (by
    subject kind), cross-check names too."""
    r = _Reader(file)
    calendar = _calendar(r, doc)
    retention = doc.get("retention", {})
    days = retention.get("closed_referral_days") if isinstance(retention, dict) else None
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        r.bad(doc.key_lines.get("retention", doc.line), "retention.closed_referral_days must be a positive number")
        days = 0
    mashes: dict[str, MashRules] = {}
    section = r.mapping(doc, "mashes")
    for name, body in section.items():
        line = section.key_lines[name]
        if not r.name(name, line, "a MASH") or not isinstance(body, LineDict):
            if isinstance(name, str) and _NAME.fullmatch(name):
                r.bad(line, f"MASH {name!r} must be a mapping")
            continue
        subject = body.get("subject")
        if subject not in _SUBJECTS:
            r.bad(body.key_lines.get("subject", body.line), f"subject must be one of {', '.join(_SUBJECTS)}")
        screens = bool(body.get("screen_open_case", False))
        if (screens and open_cases is not None and subject in _SUBJECTS
                and not open_cases.get(str(subject))):
            r.bad(body.key_lines.get("screen_open_case", body.line),
                  f"MASH {name!r} screens on arrival, but no record category answers the open-case check for "
                  f"{'an adult' if subject == 'adult' else 'a child'} (mark one `open_cases: {subject}` in "
                  "record_categories.yaml)")
        mashes[name] = MashRules(name, str(subject), screens, _ratings(r, body), _decisions(r, body, roles))
    if not mashes:
        r.bad(section.line, "at least one MASH must be described")
    owners: list[OwnerNotification] = []
    raw_owners = doc.get("owner_notifications", []) or []
    for item in raw_owners if isinstance(raw_owners, list) else []:
        line = getattr(item, "line", doc.key_lines.get("owner_notifications", doc.line))
        agency = item.get("agency") if isinstance(item, dict) else None
        cats = item.get("categories") if isinstance(item, dict) else None
        if not isinstance(agency, str) or (agencies is not None and agency not in agencies):
            r.bad(line, "owner notification names an undeclared agency")
            continue
        if not isinstance(cats, list) or not cats or not all(isinstance(c, str) for c in cats):
            r.bad(line, "owner notification needs a list of record categories")
            continue
        unknown = [c for c in cats if categories is not None and c not in categories]
        if unknown:
            r.bad(line, f"owner notification names undeclared categories: {', '.join(unknown)}")
            continue
        owners.append(OwnerNotification(agency, tuple(cats)))
    concern = doc.get("concern_categories", [])
    if not isinstance(concern, list) or not concern or not all(isinstance(c, str) and _NAME.fullmatch(c)
                                                                for c in concern):
        r.bad(doc.line_of("concern_categories"), "concern_categories must list lower-case names")
        concern = []
    permissions = _permissions(r, doc, roles)
    receivers = r.mapping(doc, "receivers")
    for agency in receivers:
        if agencies is not None and agency not in agencies:
            r.bad(receivers.line_of(agency), f"receiver for undeclared agency {agency!r}")
        elif not isinstance(receivers[agency], str) or not receivers[agency].startswith("spiffe://"):
            r.bad(receivers.line_of(agency), "a receiver must be a certificate identity (spiffe://…)")
    screening = _screening(r, doc, roles, mashes)
    for name, mash in list(mashes.items()):
        own = _mash_screening(r, section[name], roles, screening) if isinstance(section.get(name), LineDict) else None
        mashes[name] = replace(mash, screening=own or screening)
    if r.findings:
        return None, r.findings
    return WorkflowPolicy(calendar, mashes, days, frozenset(concern), permissions,
                          {str(k): str(v) for k, v in receivers.items()}, screening, tuple(owners), file), []


def _permissions(r: _Reader, doc: LineDict, roles: Collection[str] | None) -> dict[str, frozenset[str]]:
    section = r.mapping(doc, "permissions")
    found: dict[str, frozenset[str]] = {}
    for name, holders in section.items():
        line = section.line_of(name)
        if name not in PERMISSIONS:
            r.bad(line, f"unknown permission {name!r}; permissions are {', '.join(PERMISSIONS)}")
        elif not isinstance(holders, list) or not all(isinstance(h, str) for h in holders):
            r.bad(line, f"permission {name!r} must list roles")
        elif roles is not None and (unknown := [h for h in holders if h not in roles]):
            r.bad(line, f"permission {name!r} names undeclared roles: {', '.join(unknown)}")
        else:
            found[name] = frozenset(holders)
    return found


def _screening(r: _Reader, doc: LineDict, roles: Collection[str] | None,
               mashes: Mapping[str, MashRules]) -> ScreeningIdentity | None:
    if "screening" not in doc:
        if any(m.screen_open_case for m in mashes.values()):
            r.bad(doc.line, "a MASH screens on arrival, so 'screening' must say whom the gateway acts as")
        return None
    section = r.mapping(doc, "screening")
    missing = [k for k in _SCREENING_KEYS if not isinstance(section.get(k), str) or not section[k]]
    if missing:
        r.bad(section.line, f"screening needs {', '.join(missing)}")
        return None
    if roles is not None and section["role"] not in roles:
        r.bad(section.line_of("role"), f"screening role {section['role']!r} is not declared")
    return ScreeningIdentity(**{k: str(section[k]) for k in _SCREENING_KEYS})


def _mash_screening(r: _Reader, mash: LineDict, roles: Collection[str] | None,
                    default: ScreeningIdentity | None) -> ScreeningIdentity | None:
    """A MASH's own `screening:` (e.g. the adults' MASH checks under its own purpose and agreement): the keys it
    gives replace the top-level ones."""
    if "screening" not in mash:
        return None
    section = r.mapping(mash, "screening")
    unknown = [k for k in section if k not in _SCREENING_KEYS]
    if unknown:
        r.bad(section.line, f"unknown screening keys: {', '.join(map(str, unknown))}")
    given = {k: section[k] for k in _SCREENING_KEYS if k in section}
    if any(not isinstance(v, str) or not v for v in given.values()):
        r.bad(section.line, "screening values must be non-empty text")
        return None
    merged = {**({k: getattr(default, k) for k in _SCREENING_KEYS} if default else {}), **given}
    missing = [k for k in _SCREENING_KEYS if k not in merged]
    if missing:
        r.bad(section.line, f"screening needs {', '.join(missing)}")
        return None
    if roles is not None and "role" in given and given["role"] not in roles:
        r.bad(section.line_of("role"), f"screening role {given['role']!r} is not declared")
    return ScreeningIdentity(**{k: str(merged[k]) for k in _SCREENING_KEYS})


def load_workflow(directory: Path, *, roles: Collection[str] | None = None,
                  agencies: Collection[str] | None = None,
                  categories: Collection[str] | None = None,
                  open_cases: Mapping[str, str] | None = None) -> WorkflowPolicy:
    """Load `<directory>/workflow.yaml`; PolicyError with every finding if it is missing or wrong."""
    try:
        doc = load_yaml(directory / FILE_NAME, FILE_NAME)
    except SourceError as exc:
        raise PolicyError([exc.finding], "the workflow policy cannot be read") from None
    policy, findings = parse_workflow(doc, roles=roles, agencies=agencies, categories=categories,
                                      open_cases=open_cases)
    if policy is None:
        raise PolicyError(findings, "the workflow policy cannot be used")
    return policy


def workflow_for(directory: Path, vocabulary: Vocabulary) -> tuple[WorkflowPolicy | None, list[Finding]]:
    """The workflow policy of a policy directory, checked against that policy's vocabulary, with every finding.

    (None, []) when the directory has no workflow.yaml. SourceError when the file cannot be parsed at all.
    """
    if not (directory / FILE_NAME).is_file():
        return None, []
    doc = load_yaml(directory / FILE_NAME, FILE_NAME)
    return parse_workflow(
        doc, roles=set(vocabulary.roles), agencies=set(vocabulary.agencies),
        categories=set(vocabulary.record_categories),
        open_cases={k: c for k in SUBJECT_KINDS if (c := vocabulary.open_case_category_for(k))})


def keeps_workflow(active: WorkflowPolicy | None, candidate: WorkflowPolicy | None) -> list[Finding]:
    """What stops `candidate` replacing `active` while referrals run: referrals name their MASH, so a reload may
    not drop workflow.yaml or a MASH. (Ratings and decisions may change; deadlines already set stay as set.)"""
    if active is None:
        return []
    if candidate is None:
        return [Finding(FILE_NAME, 0, "the gateway runs the referral workflow, so the policy must keep its "
                                      "workflow.yaml")]
    return [Finding(candidate.file, 0, f"MASH {name!r} is gone, but referrals may name it; keep it")
            for name in active.mashes if name not in candidate.mashes]
