"""Property: through the real query path to serialized response bytes, nothing restricted leaks.

Records, roles and purposes are generated; the gateway's query service plans, redacts and audits them and
the answer is converted to the wire message exactly as the servicer does. The raw value of every field
that the caller may not see in full (by an oracle written from the rules, not from the redactor's output)
must appear nowhere in the serialized response, and every field the gateway passed to redaction must be
in the redaction manifest exactly once.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import make_service

from agency_stubs import CATEGORIES
from gateway.api.convert import answer_to_proto
from gateway.domain import AgencyContact, DisclosureLevel, Field, Record, RecordKind, SubjectIdentifiers
from gateway.errors import InvalidRequest, RequestRefused
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.keyring import Keyring
from gateway.policy import PolicyHolder
from gateway.service.ports import LookupCommand, LookupResult, PersonMatch
from gateway.service.query import Caller, QueryCommand

KAI = SubjectIdentifiers(nhs_number="9990000018")
REQUESTS = [
    ("safeguarding_screening", "dpa_2018_sch1_para18", "mash-isa-2026"),
    ("s47_enquiry", "children_act_1989_s47", "mash-isa-2026"),
    ("s17_assessment", "children_act_1989_s17", "mash-isa-2026"),
    ("early_help", "children_act_2004_s10", "early-help-isa-2026"),
    ("housing_management", "uk_gdpr_6_1_e", "housing-partnership-2026"),
]


def _value(category: str, serial: int) -> st.SearchStrategy[str]:
    """Realistic values per field category, tagged so each raw value is unique in the response."""
    tag = f"{serial:04d}"
    if category in {"record.date", "person.date_of_birth"}:
        return st.dates(min_value=datetime(1950, 1, 1).date(), max_value=datetime(2026, 11, 1).date()).map(
            lambda d: d.isoformat())
    if category == "person.postcode":
        return st.sampled_from(["E8 3PR", "SW1A 1AA", "N4 2QF", "not a postcode"])
    if category == "person.nhs_number":
        return st.just(f"999{tag}12{serial % 10}")
    if category == "police.handling_code":
        return st.sampled_from(["P", "C", "", "X"])
    return st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=0, max_size=12).map(
        lambda s: f"RAW{tag}-{s}".strip())


@st.composite
def agency_records(draw: st.DrawFn) -> dict[str, list[Record]]:
    """Up to a few records per agency, of categories the catalogue defines, with tagged values."""
    serial = 0
    out: dict[str, list[Record]] = {}
    for category in draw(st.lists(st.sampled_from(sorted(CATEGORIES)), max_size=8)):
        spec = CATEGORIES[category]
        fields = []
        for name, field_category in spec.fields:
            serial += 1
            fields.append(Field(name, field_category, draw(_value(field_category, serial))))
        record = Record(spec.agency, f"{spec.agency}-{serial}", spec.record_type, category,
                        RecordKind(spec.kind.value), datetime(2026, 1, 1, tzinfo=UTC), f"summary {serial}",
                        tuple(fields))
        out.setdefault(spec.agency, []).append(record)
    return out


def _may_see_in_full(holder: PolicyHolder, record: Record, field: Field, level: DisclosureLevel,
                     requester: str, inside_mash: bool) -> bool:
    """The oracle, from the rules: may this caller receive this field's raw value?"""
    rules = holder.current.redaction
    guard = rules.safeguarding
    if record.category in guard.protected_record_categories and requester != record.agency:
        return False
    if record.category in guard.handling_code_record_categories and requester != record.agency:
        codes = [f.value for f in record.fields if f.category == guard.handling_code_field]
        if codes not in (["P"], ["C"]):
            return False
    if field.category in guard.pseudonymise_outside_mash and not inside_mash:
        return False
    if level is DisclosureLevel.FULL:
        return True
    if rules.record_rule_for(record.agency, record.category) is not None:
        return False
    rule = rules.rule_for(record.agency, field.category)
    return rule is not None and rule.operator == "keep"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), records=agency_records())
async def test_no_restricted_value_reaches_the_wire_and_the_manifest_is_complete(
    holder: PolicyHolder, keys: dict[str, Keyring], data: st.DataObject, records: dict[str, list[Record]]
) -> None:
    """For any caller and records, restricted raw values never appear in the serialized response."""
    snapshot = holder.current
    identity, role = data.draw(st.sampled_from(sorted(
        (identity, role) for identity, roles in snapshot.bindings.items() for role in roles
    )))
    purpose, legal_basis, agreement = data.draw(st.sampled_from(REQUESTS))

    def answer(agency: str, command: LookupCommand) -> LookupResult:
        # A node returns only what it was asked for; the gateway is also tested against nodes that do not.
        held = tuple(r for r in records.get(agency, []) if r.category in command.categories)
        return LookupResult(agency, (PersonMatch("X", "nhs_number", held, False),), AgencyContact(agency))

    service, _, sink = make_service(holder, keys, answer)
    caller = Caller(identity, identity.split("/")[4], "user.1", role)
    command = QueryCommand("req-prop", KAI, purpose, legal_basis, agreement, "CASE-1")
    try:
        result = await service.query(caller, command, timeout=5)
    except (RequestRefused, InvalidRequest):
        return  # refused requests disclose nothing by construction
    wire = hub_pb.QueryResponse(answers=[answer_to_proto(a) for a in result.answers]).SerializeToString()

    role_info = snapshot.roles[role]
    released_in_full: set[str] = set()
    restricted: list[tuple[Record, Field]] = []
    for outcome in result.answers:
        for record in records.get(outcome.agency, []):
            level = _level_for(snapshot, role, purpose, agreement, outcome.agency, record.category)
            for field in record.fields:
                if level >= DisclosureLevel.PERTINENT and _may_see_in_full(
                        holder, record, field, level, caller.agency, role_info.inside_mash):
                    released_in_full.add(field.value)
                else:
                    restricted.append((record, field))
    for record, field in restricted:
        if len(field.value) >= 4 and field.value not in released_in_full:
            assert field.value.encode() not in wire, (
                f"{record.agency}/{record.category}/{field.name} ({field.category}) leaked to {role} for {purpose}"
            )

    manifest_fields = Counter(
        (m.record_id, m.field) for e in sink.events for m in e.manifest if m.field
    )
    for outcome in result.answers:
        sent = {r.record_id for r in outcome.records}
        for record in records.get(outcome.agency, []):
            if record.record_id in sent:
                for field in record.fields:
                    assert manifest_fields[(record.record_id, field.name)] == 1, (record.record_id, field.name)


def _level_for(snapshot, role, purpose, agreement, agency, category):  # type: ignore[no-untyped-def]
    if not snapshot.agreement_allows(agreement, agency, category, purpose, datetime(2026, 11, 26).date()):
        return DisclosureLevel.NONE
    return snapshot.decide(role, purpose, agency, category).level
