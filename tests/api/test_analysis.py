"""AnalysisService end to end over real mTLS: a real gateway, real nodes enrolled in the locator, and counts
checked against the world's own records. Nodes are asked for counts only, and only the nodes that hold the
person; refusals are audited; no identifier reaches the audit log."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from hub_helpers import error_reason, field_violations, subject

from agency_stubs import World, build_world
from agency_stubs.cast import DEAN_ASHBY, JODIE_MERCER, CastMember
from agency_stubs.dataset import PersonEntry
from agency_stubs.locator_enrolment import enrol_running_node
from gateway.api.tls import channel_credentials, client_credentials
from gateway.audit import decode_entry
from gateway.demo.partnership import Partnership
from gateway.domain import AuditEvent, AuditKind
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import analysis_service_pb2 as analysis_pb
from gateway.generated.mash.gateway.v1 import analysis_service_pb2_grpc as analysis_grpc
from gateway.generated.mash.gateway.v1 import common_pb2 as common_pb
from gateway.partnership import load_plan

AGENCIES = load_plan(Path(__file__).resolve().parents[2] / "policies").record_holders
PERSON = {"purpose": "safeguarding_analysis", "legal_basis": "dpa_2018_sch1_para18",
          "agreement": "mash-analysis-isa-2026", "case_reference": "MASH-2026-0100"}
STRATEGIC = {"purpose": "strategic_safeguarding_analysis", "legal_basis": "children_act_2004_s16e",
             "agreement": "mash-analysis-isa-2026", "case_reference": "BOARD-2026-Q4"}
# What policy lets the analyst count nothing of: protected services (their deny is at EXISTS).
UNCOUNTED = {"health.sexual_health", "housing.refuge"}
KNOWN = analysis_pb.SUMMARY_STATUS_KNOWN


@pytest.fixture(scope="module")
def small_world() -> World:
    return build_world(people=300)


@pytest.fixture(scope="module")
def picture_world() -> World:
    """Large enough for five repeat victims in the period, so the picture shows a number, not only "<5"."""
    return build_world(people=1000)


@dataclasses.dataclass
class Analyst:
    partnership: Partnership
    stub: analysis_grpc.AnalysisServiceAsyncStub
    role: str = "mash_analyst"

    async def describe(self, **request: Any) -> analysis_pb.DescribePersonResponse:
        fields = dict(request)
        fields["subject"] = common_pb.SubjectIdentifiers(**fields.get("subject", {}))
        return await self.stub.DescribePerson(analysis_pb.DescribePersonRequest(**fields), metadata=self.metadata,
                                              timeout=10)

    async def picture(self, **request: Any) -> analysis_pb.GetPartnershipPictureResponse:
        return await self.stub.GetPartnershipPicture(analysis_pb.GetPartnershipPictureRequest(**request),
                                                     metadata=self.metadata, timeout=20)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-mash-user", "analyst.one"), ("x-mash-role", self.role))

    async def audit(self) -> list[AuditEvent]:
        assert self.partnership.gateway is not None
        rows = await self.partnership.gateway.deps.audit.store.scan(0, 1_000_000)
        return [decode_entry(r.data).event for r in rows]


@contextlib.asynccontextmanager
async def analysing(tmp_path: Path, policy_dir: Path, world: World, *,
                    enrolling: Sequence[str] = AGENCIES) -> AsyncIterator[Analyst]:
    async with Partnership(tmp_path / "state", policy_dir, world=world) as partnership:
        for agency in enrolling:
            channel = partnership.channel(channel_credentials(partnership.pki.ca_cert, *partnership.pki.node(agency)))
            await enrol_running_node(partnership.nodes[agency], channel)
        channel = partnership.channel(client_credentials(partnership.pki, "hub", "analysis-console"))
        yield Analyst(partnership, analysis_grpc.AnalysisServiceStub(channel))


def summarised(captured: list[dict[str, Any]]) -> set[str]:
    return {str(e["agency"]) for e in captured if e.get("event") in {"summarise", "lookup", "lookup_rejected"}}


def held(partnership: Partnership, member: CastMember) -> dict[str, PersonEntry]:
    """Ground truth: the member's entry at each node that serves one, straight from the served datasets."""
    out = {}
    for agency, node in partnership.nodes.items():
        entries = [e for e in node.servicer.dataset.persons.values() if e.nhs_number == member.nhs_number]
        if entries:
            (out[agency],) = entries
    return out


async def test_an_analyst_sees_counts_and_dates_from_the_nodes_that_hold_the_person_only(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Jodie is known to police, health, housing and adult social care: only their nodes are asked, each
    agency's counts and first/last dates match its records, and her two incidents as the victim are counted."""
    async with analysing(tmp_path, policy_dir, small_world) as analyst:
        with structlog.testing.capture_logs() as captured:
            response = await analyst.describe(subject=subject(JODIE_MERCER), **PERSON)
        entries = held(analyst.partnership, JODIE_MERCER)
        assert summarised(captured) == set(entries) >= {"police", "health", "housing"}
        assert [a.agency for a in response.agencies] == list(AGENCIES)
        truth = {a: Counter(r.category for r in e.records if r.category not in UNCOUNTED) for a, e in entries.items()}
        for answer in response.agencies:
            assert answer.HasField("receipt"), answer.agency
            if answer.agency not in truth:
                assert answer.status == analysis_pb.SUMMARY_STATUS_NOT_KNOWN, answer.agency
                continue
            assert answer.status == KNOWN, (answer.agency, answer.detail)
            assert {c.category: c.records for c in answer.categories} == dict(truth[answer.agency]), answer.agency
            records = entries[answer.agency].records
            for c in answer.categories:
                days = sorted(r.occurred_at.date().isoformat() for r in records if r.category == c.category)
                assert (c.first_date, c.last_date) == (days[0], days[-1]), c.category
        roles = small_world.dataset("police").persons[JODIE_MERCER.person_refs["police"]].roles
        assert response.domestic_abuse.as_victim == sum(p == "victim" for p in roles.values()) == 2
        assert (response.domestic_abuse.as_perpetrator, response.domestic_abuse.switches_role) == (0, False)
        assert sum(y.areas[0].records for y in response.years) == sum(sum(c.values()) for c in truth.values())


async def test_a_perpetrator_is_counted_as_one_and_nothing_is_fetched_as_records(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """Dean's incidents count as perpetrator; no node is sent a Lookup for an analysis."""
    async with analysing(tmp_path, policy_dir, small_world) as analyst:
        with structlog.testing.capture_logs() as captured:
            response = await analyst.describe(subject=subject(DEAN_ASHBY), **PERSON)
        assert not [e for e in captured if e.get("event") == "lookup"]
        assert (response.domestic_abuse.as_victim, response.domestic_abuse.as_perpetrator) == (0, 2)


async def test_a_node_without_summaries_is_reported_as_such_and_sent_nothing(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    """A node whose Describe lists no FEATURE_SUMMARISE is not asked, not even for records: the answer says so."""
    async with analysing(tmp_path, policy_dir, small_world) as analyst:
        police = analyst.partnership.nodes["police"].servicer
        police.features = tuple(f for f in police.features if f != agency_pb.FEATURE_SUMMARISE)
        with structlog.testing.capture_logs() as captured:
            response = await analyst.describe(subject=subject(JODIE_MERCER), **PERSON)
        assert "police" not in summarised(captured)
        answer = next(a for a in response.agencies if a.agency == "police")
        assert answer.status == analysis_pb.SUMMARY_STATUS_NOT_SUPPORTED
        assert not answer.categories
        assert "no records were fetched" in answer.detail
        assert response.domestic_abuse.as_victim == 0  # its incidents are not guessed at
        assert next(a for a in response.agencies if a.agency == "health").status == KNOWN


async def test_bad_person_requests_are_refused_with_reasons_and_audited(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    async with analysing(tmp_path, policy_dir, small_world, enrolling=()) as analyst:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await analyst.describe(subject={"nhs_number": "9434765918"}, **PERSON)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "subject.nhs_number" in field_violations(bad.value)

        with pytest.raises(grpc.aio.AioRpcError) as wrong_agreement:
            await analyst.describe(subject=subject(JODIE_MERCER), **{**PERSON, "agreement": "mash-isa-2026"})
        assert wrong_agreement.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(wrong_agreement.value) == "AGREEMENT_PURPOSE"

        analyst.role = "mash_manager"  # the analysis console's certificate may not assert it
        with pytest.raises(grpc.aio.AioRpcError) as wrong_role:
            await analyst.describe(subject=subject(JODIE_MERCER), **PERSON)
        assert wrong_role.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(wrong_role.value) == "ROLE_NOT_BOUND"

        refusals = [e for e in await analyst.audit() if e.kind is AuditKind.REFUSAL]
        assert [e.status for e in refusals] == ["INVALID_ARGUMENT", "PERMISSION_DENIED", "PERMISSION_DENIED"]
        assert all(e.purpose == "safeguarding_analysis" for e in refusals)


def truth_picture(world: World, start: date, end: date) -> dict[str, int]:
    """Ground truth from the police records: people with 2+ incidents as victim, as perpetrator, or both parts."""
    parts: dict[str, Counter[str]] = {}
    for entry in world.dataset("police").persons.values():
        for record in entry.records:
            part = entry.roles.get(record.record_id)
            if part and start <= record.occurred_at.date() <= end:
                parts.setdefault(entry.person_ref, Counter())[part] += 1
    return {"repeat_victims": sum(c["victim"] >= 2 for c in parts.values()),
            "repeat_perpetrators": sum(c["perpetrator"] >= 2 for c in parts.values()),
            "role_switchers": sum(bool(c["victim"] and c["perpetrator"]) for c in parts.values()),
            "movers": 0}


def shown(n: int) -> str:
    return str(n) if n >= 5 else "<5"


async def test_the_partnership_picture_matches_the_world_and_audits_counts_only(
        tmp_path: Path, policy_dir: Path, picture_world: World) -> None:
    """Over the shipped partnership (no areas) the one row is the whole partnership: its counts are the
    police records' own, suppressed below 5, and the audit entry holds the released text, no subject."""
    start, end = date(2020, 1, 1), date(2026, 11, 1)
    async with analysing(tmp_path, policy_dir, picture_world) as analyst:
        response = await analyst.picture(period_start=start.isoformat(), period_end=end.isoformat(), **STRATEGIC)
        truth = truth_picture(picture_world, start, end)
        assert truth["repeat_victims"] >= 5, "the world should have enough repeat victims to show a number"
        total = {m: getattr(response.total, m).shown for m in truth}
        assert total == {m: shown(n) for m, n in truth.items()}
        assert [r.area for r in response.areas] == [""]
        assert {m: getattr(response.areas[0], m).shown for m in truth} == total
        assert set(response.agencies_counted) == set(AGENCIES) - {a.agency for a in response.agencies_left_out}
        assert "police" in response.agencies_counted
        (entry,) = [e for e in await analyst.audit() if e.details.get("analysis") == "partnership_picture"]
        assert entry.kind is AuditKind.DISCLOSURE
        assert entry.subject_tokens == ()
        assert not entry.sealed_identifiers
        assert json.loads(entry.details["released"])[""]["repeat_victims"] == total["repeat_victims"]
        assert entry.payload_digest.startswith("sha256:")


async def test_nodes_that_have_not_enrolled_are_left_out_of_the_picture_with_the_reason(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    enrolled = [a for a in AGENCIES if a != "police"]
    async with analysing(tmp_path, policy_dir, small_world, enrolling=enrolled) as analyst:
        response = await analyst.picture(period_start="2020-01-01", period_end="2026-11-01", **STRATEGIC)
        left = {a.agency: a.reason for a in response.agencies_left_out}
        assert "police" in left
        assert "not enrolled" in left["police"]
        assert response.total.repeat_victims.shown == "<5"  # no police rows: no incidents to count


async def test_bad_periods_are_refused_with_field_violations_and_audited(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    async with analysing(tmp_path, policy_dir, small_world, enrolling=()) as analyst:
        cases: Mapping[tuple[str, str], str] = {
            ("2026-01-01", "2025-01-01"): "period_end",
            ("", "2025-01-01"): "period_start",
            ("2026-1-1", "2026-02-01"): "period_start",
            ("2010-01-01", "2026-01-01"): "period_end",
        }
        for (begin, finish), wrong in cases.items():
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await analyst.picture(period_start=begin, period_end=finish, **STRATEGIC)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (begin, finish)
            assert wrong in field_violations(bad.value), (begin, finish)
        with pytest.raises(grpc.aio.AioRpcError) as person_purpose:
            await analyst.picture(period_start="2025-01-01", period_end="2025-12-31",
                                  **{**STRATEGIC, "purpose": "safeguarding_screening",
                                     "legal_basis": "dpa_2018_sch1_para18"})
        assert person_purpose.value.code() == grpc.StatusCode.PERMISSION_DENIED
        refusals = [e for e in await analyst.audit() if e.kind is AuditKind.REFUSAL]
        assert len(refusals) == len(cases) + 1


async def test_no_identifier_of_the_person_reaches_the_audit_log(
        tmp_path: Path, policy_dir: Path, small_world: World) -> None:
    async with analysing(tmp_path, policy_dir, small_world) as analyst:
        await analyst.describe(subject=subject(JODIE_MERCER), **PERSON)
        with pytest.raises(grpc.aio.AioRpcError):
            await analyst.describe(subject={**subject(JODIE_MERCER), "date_of_birth": "2999-01-01"}, **PERSON)
        await analyst.picture(period_start="2020-01-01", period_end="2026-11-01", **STRATEGIC)
        events = await analyst.audit()
        text = json.dumps([dataclasses.asdict(e) for e in events], default=str).casefold()
        for value in (JODIE_MERCER.nhs_number, JODIE_MERCER.given_name, JODIE_MERCER.family_name,
                      JODIE_MERCER.date_of_birth, "1993-08-02", "2999-01-01"):
            assert value.casefold() not in text, f"{value!r} is in the audit log"
        described = [e for e in events if e.details.get("analysis") == "describe_person"]
        assert len(described) == len(AGENCIES)
        assert all(e.subject_tokens for e in described)
