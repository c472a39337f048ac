"""The redactor: turns one agency's records into what one caller may see, with a manifest of every field.

Order of protections for each record: protected record categories (never content except to the roles the
vocabulary declares as their readers), handling codes (police intelligence only with P, or C with its
conditions), the disclosure level, whole-record rules, then field rules. Third-party identities are
pseudonymised outside the MASH at every level. Anything without a rule is withheld.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from gateway.domain import (
    DisclosedField,
    DisclosedRecord,
    DisclosureLevel,
    FieldDisclosure,
    ManifestEntry,
    Record,
)
from gateway.keyring import Keyring
from gateway.redaction import operators as ops
from gateway.redaction.rules import FieldRule, RecordRule, RedactionRules, Transform

FULL = FieldDisclosure.FULL
REDACTED = FieldDisclosure.REDACTED
WITHHELD = FieldDisclosure.WITHHELD

# Manifest reasons. They name rules and categories, never values, and the one used for protected records
# is deliberately generic so it gives nothing away about which service holds the record.
REASON_NO_RULE = "no redaction rule"
REASON_NOT_DISCLOSABLE = "not disclosable to this requester"
REASON_OUTSIDE_MASH = "third-party identity pseudonymised outside the MASH"
REASON_CONDITIONS = "handling conditions travel with the record"
REASON_EXISTENCE_ONLY = "existence only"
REASON_WRONG_AGENCY = "record does not belong to the answering agency"
REASON_HANDLING_MISSING = "no handling code: not shared outside the owning agency"
REASON_HANDLING_OTHER = "handling code does not permit sharing outside the owning agency"
REASON_CONDITIONS_MISSING = "handling code C without conditions: not shared outside the owning agency"

GENERIC_CATEGORY = "withheld"
"""The category shown for every part of a protected record that is withheld."""

WITHHELD_RECORD_DOMAIN = "withheld-record"
"""Pseudonym domain of protected record ids, so auditors holding the key can still tell which record."""

# At PERTINENT, a third-party identity outside the MASH may follow its field rule only when that rule
# reveals nothing of the identity; any other rule is overridden by the safeguarding pseudonym.
_SAFE_FOR_THIRD_PARTIES = frozenset({"drop", "replace", "pseudonymise", "agency_summary"})


@dataclass(frozen=True, slots=True)
class RedactionContext:
    """Who is asking and what they were granted for one agency's records."""

    agency: str  # the agency whose records these are
    level: DisclosureLevel
    role: str
    requester_agency: str  # the caller's home agency ("hub" for MASH-wide roles)
    inside_mash: bool
    disclosure_date: date  # age bands are computed at this date
    # Pseudonyms agree only within this scope (e.g. the request id); empty means stable across requests.
    pseudonym_scope: str = ""


@dataclass(frozen=True, slots=True)
class RedactionResult:
    """The records a caller may see, and one manifest entry per input field plus one per input record."""

    records: tuple[DisclosedRecord, ...]
    manifest: tuple[ManifestEntry, ...]


def format_timestamp(moment: datetime) -> str:
    """An RFC 3339 timestamp in UTC (a naive time is taken to be UTC already)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# A field plan says, per field category, what happens to a field for one kind of caller:
# (action, operator, reason, transform). Plans are built once per (agency, level, inside/outside the MASH)
# so redacting a field is one dictionary read and one branch.
_KEEP, _WITHHOLD, _TRANSFORM, _PSEUDONYMISE = range(4)
_Step = tuple[int, str, str, "Transform | None"]
_Plan = dict[str, _Step]
_KEEP_STEP: _Step = (_KEEP, "", "", None)
_NO_RULE_STEP: _Step = (_WITHHOLD, "", REASON_NO_RULE, None)
_SAFEGUARD_STEP: _Step = (_PSEUDONYMISE, "pseudonymise", REASON_OUTSIDE_MASH, None)
_CONDITIONS_STEP: _Step = (_KEEP, "", REASON_CONDITIONS, None)


class Redactor:
    """Applies redaction rules and safeguarding protections; keeps nothing between calls but field plans."""

    __slots__ = ("_keys", "_plans", "_pseudonyms", "_rules")

    def __init__(self, rules: RedactionRules, pseudonym_keys: Keyring) -> None:
        self._rules = rules
        self._keys = pseudonym_keys
        self._pseudonyms = ops.Pseudonymiser(pseudonym_keys)
        self._plans: dict[tuple[str, bool, bool], tuple[_Plan, _Step]] = {}

    @property
    def rules(self) -> RedactionRules:
        return self._rules

    def redact(self, records: Sequence[Record], ctx: RedactionContext) -> RedactionResult:
        """Redact one agency's records for the caller in `ctx`; every field lands in the manifest once."""
        out: list[DisclosedRecord] = []
        manifest: list[ManifestEntry] = []
        sg = self._rules.safeguarding
        record_rules = self._rules.record_rules(ctx.agency)
        level = ctx.level
        full = level >= DisclosureLevel.FULL
        plan, default_step = self._plan(ctx.agency, full, not ctx.inside_mash)
        date_rule = self._rules.rule_for(ctx.agency, "record.date")
        pseudonyms = self._pseudonyms.scoped(ctx.pseudonym_scope)
        for record in records:
            # A category belongs to the agency it is named after (police.intelligence → police): a record
            # that claims another agency makes no one an owner or a reader of it.
            genuine = record.category.startswith(record.agency + ".")
            readers = _protected_readers(record.category, sg.protected_readers)
            if readers is not None and not (genuine and record.agency == ctx.agency and ctx.role in readers):
                self._withhold_generic(record, manifest)
                continue
            owner = genuine and record.agency == ctx.requester_agency
            if record.agency != ctx.agency:
                self._withhold(record, manifest, REASON_WRONG_AGENCY)
                continue
            if level < DisclosureLevel.PERTINENT:
                self._withhold(record, manifest, f"level {level.name}: content not disclosed")
                continue
            record_plan = plan
            conditions: tuple[str, ...] = ()
            if _within(record.category, sg.handling_code_record_categories) and not owner:
                verdict = _handling_verdict(record, sg.handling_code_field, sg.handling_conditions_field)
                if isinstance(verdict, str):
                    self._withhold(record, manifest, verdict)
                    continue
                if verdict:
                    # The conditions must travel with the information, whatever the field rule says.
                    conditions = verdict
                    record_plan = {**plan, sg.handling_conditions_field: _CONDITIONS_STEP}
            if not full:
                record_rule = record_rules.get(record.category)
                if record_rule is not None:
                    out.append(self._existence_only(record, record_rule, manifest))
                    continue
            if full:
                occurred = format_timestamp(record.occurred_at)
                occurred_full = True
            else:
                occurred = _occurred_at_pertinent(record.occurred_at, date_rule, ctx.disclosure_date, pseudonyms)
                occurred_full = date_rule is not None and date_rule.operator == "keep"
            out.append(self._disclose(record, ctx.disclosure_date, record_plan, default_step, conditions,
                                      occurred, occurred_full, manifest, pseudonyms))
        return RedactionResult(tuple(out), tuple(manifest))

    def _plan(self, agency: str, full: bool, outside_mash: bool) -> tuple[_Plan, _Step]:
        """The field plan for one kind of caller, and the step for categories it does not name."""
        key = (agency, full, outside_mash)
        cached = self._plans.get(key)
        if cached is not None:
            return cached
        rules = self._rules.field_rules(agency)
        sg = self._rules.safeguarding
        plan: _Plan = {}
        if full:
            default_step = _KEEP_STEP
        else:
            default_step = _NO_RULE_STEP
            for category, rule in rules.items():
                if rule.operator == "keep":
                    plan[category] = _KEEP_STEP
                elif rule.operator == "drop":
                    plan[category] = (_WITHHOLD, "drop", f"dropped by {rule.source}", None)
                else:
                    plan[category] = (_TRANSFORM, rule.operator, "", rule.apply)
        if outside_mash:
            for category in sg.pseudonymise_outside_mash:
                own = rules.get(category)
                if full or own is None or own.operator not in _SAFE_FOR_THIRD_PARTIES:
                    plan[category] = _SAFEGUARD_STEP
        result = (plan, default_step)
        if agency in self._rules.agencies:  # bounded: only agencies the rules declare are cached
            self._plans[key] = result
        return result

    # -- one record ----------------------------------------------------------------------------------------

    def _disclose(
        self,
        record: Record,
        on: date,
        plan: _Plan,
        default_step: _Step,
        conditions: tuple[str, ...],
        occurred: str,
        occurred_full: bool,
        manifest: list[ManifestEntry],
        pseudonyms: ops.Pseudonymiser,
    ) -> DisclosedRecord:
        domain = self._rules.safeguarding.pseudonym_domain
        record_id = record.record_id
        summary = record.summary
        all_full = occurred_full
        fields: list[DisclosedField] = []
        entries: list[ManifestEntry] = []
        add_field = fields.append
        add_entry = entries.append
        new_field = DisclosedField
        new_entry = ManifestEntry
        get_step = plan.get
        for f in record.fields:
            category = f.category
            action, operator, reason, transform = get_step(category, default_step)
            if action == _KEEP:
                value, disclosure = f.value, FULL
            elif action == _WITHHOLD:
                value, disclosure = "", WITHHELD
            elif action == _TRANSFORM:
                assert transform is not None
                released = transform(f.value, summary, on, pseudonyms)
                value, disclosure = ("", WITHHELD) if released is None else (released, REDACTED)
            else:
                value, disclosure = pseudonyms.pseudonym(f.value, domain), REDACTED
            if disclosure is not FULL:
                all_full = False
            add_field(new_field(f.name, category, value, disclosure, operator, reason))
            add_entry(new_entry(record_id, f.name, category, disclosure, operator, reason))
        manifest.append(new_entry(
            record_id, "", record.category, FULL if all_full else REDACTED, "",
            REASON_CONDITIONS if conditions else "",
        ))
        manifest.extend(entries)
        return DisclosedRecord(
            record_id, record.record_type, record.category, record.kind, occurred, summary, tuple(fields),
            conditions,
        )

    def _existence_only(
        self, record: Record, rule: RecordRule, manifest: list[ManifestEntry]
    ) -> DisclosedRecord:
        manifest.append(ManifestEntry(record.record_id, "", record.category, REDACTED, rule.operator,
                                      f"{REASON_EXISTENCE_ONLY} ({rule.source})"))
        for f in record.fields:
            manifest.append(ManifestEntry(record.record_id, f.name, f.category, WITHHELD, rule.operator,
                                          REASON_EXISTENCE_ONLY))
        return DisclosedRecord(
            record_id=record.record_id,
            record_type=record.record_type,
            category=record.category,
            kind=record.kind,
            occurred_at="",
            summary=ops.existence_only(record.agency, self._rules.contact_for(record.agency)),
        )

    @staticmethod
    def _withhold(record: Record, manifest: list[ManifestEntry], reason: str) -> None:
        manifest.append(ManifestEntry(record.record_id, "", record.category, WITHHELD, "", reason))
        for f in record.fields:
            manifest.append(ManifestEntry(record.record_id, f.name, f.category, WITHHELD, "", reason))

    def _withhold_generic(self, record: Record, manifest: list[ManifestEntry]) -> None:
        # Nothing about the record may show which service holds it: not its id (agencies may build ids
        # from the service), type, category, summary, field names or field categories.
        opaque_id = self._pseudonyms.pseudonym(f"{record.agency}/{record.record_id}", WITHHELD_RECORD_DOMAIN)
        manifest.append(ManifestEntry(opaque_id, "", GENERIC_CATEGORY, WITHHELD, "", REASON_NOT_DISCLOSABLE))
        for i in range(1, len(record.fields) + 1):
            manifest.append(
                ManifestEntry(opaque_id, f"field-{i}", GENERIC_CATEGORY, WITHHELD, "", REASON_NOT_DISCLOSABLE)
            )


def _protected_readers(category: str, protected: Mapping[str, frozenset[str]]) -> frozenset[str] | None:
    """The roles that may read `category` if it is protected, else None.

    The vocabulary already passes protection down to declared sub-categories; a record whose category is
    not declared but is named below a protected one (a.b below a) is protected by that one.
    """
    name = category
    while name:
        readers = protected.get(name)
        if readers is not None:
            return readers
        name = name.rpartition(".")[0]
    return None


def _within(category: str, roots: frozenset[str]) -> bool:
    """`category` is one of `roots` or below one (categories nest by dotted name: a.b below a)."""
    if category in roots:
        return True
    parent, _, _ = category.rpartition(".")
    while parent:
        if parent in roots:
            return True
        parent, _, _ = parent.rpartition(".")
    return False


def _handling_verdict(record: Record, code_field: str, conditions_field: str) -> tuple[str, ...] | str:
    """The conditions to attach (empty for P) if the record may leave its agency, else why it may not."""
    codes = {f.value.strip().upper() for f in record.fields if f.category == code_field}
    if not codes:
        return REASON_HANDLING_MISSING
    if len(codes) > 1:
        return REASON_HANDLING_OTHER
    code = codes.pop()
    if code == "P":
        return ()
    if code == "C":
        conditions = tuple(f.value.strip() for f in record.fields
                           if f.category == conditions_field and f.value.strip())
        return conditions if conditions else REASON_CONDITIONS_MISSING
    return REASON_HANDLING_OTHER


def _occurred_at_pertinent(
    moment: datetime, rule: FieldRule | None, on: date, pseudonyms: ops.Pseudonymiser
) -> str:
    """occurred_at at PERTINENT follows the record.date rule: kept, generalised to year/month, or withheld."""
    if rule is None:
        return ""
    if rule.operator == "keep":
        return format_timestamp(moment)
    if rule.operator == "generalise_date" and rule.params.get("to") in ("year", "month"):
        return rule.apply(format_timestamp(moment), "", on, pseudonyms) or ""
    return ""
