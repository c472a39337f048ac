"""Areas (boroughs) end to end over real mTLS: a two-borough partnership written by the test, a node per
record-holding agency. Camden's hub certificate asks under Camden's agreement and Hackney's node hears
nothing; under the pan-London (cross-area) agreement it is asked and answers. The audit names both areas."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from hub_helpers import S47, subject

from agency_stubs import World
from agency_stubs.cast import NOAH_FENWICK
from agency_stubs.holding import policy_dataset
from gateway.api.tls import client_credentials
from gateway.audit import decode_entry, load_public_keys, verify_store
from gateway.demo.partnership import HubClient, Partnership
from gateway.domain import AuditEvent, AuditKind
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.generated.mash.gateway.v1 import policy_service_pb2_grpc as policy_grpc
from gateway.policy import load_snapshot
from gateway.testing import FixedClock
from tests.two_boroughs import CAMDEN_AGREEMENT, HACKNEY_AGREEMENT, PAN_AGREEMENT, add_two_boroughs

MATCH, WITHHELD = hub_pb.ANSWER_STATUS_MATCH, hub_pb.ANSWER_STATUS_WITHHELD
CLOCK = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


HACKNEY_RECORDS = f"""\
people:
  - person_ref: HCK-C000105
    given_name: {NOAH_FENWICK.given_name}
    family_name: {NOAH_FENWICK.family_name}
    date_of_birth: {NOAH_FENWICK.date_of_birth}
    nhs_number: "{NOAH_FENWICK.nhs_number}"
    records:
      - record_id: HCK-CP-1
        category: csc_hackney.cp_plan
        occurred_at: 2025-03-01T10:00:00Z
        summary: Child protection plan, neglect
        fields: {{plan_category: neglect, start_date: "2025-03-01", key_worker: "A. Worker, Hackney CSC"}}
"""


@pytest.fixture
async def boroughs(tmp_path: Path, policy_dir: Path, shared_world: World) -> AsyncIterator[Partnership]:
    """The partnership, with Noah Fenwick also on a Hackney child protection plan (he moved boroughs)."""
    policies = add_two_boroughs(policy_dir, tmp_path / "policies")
    records = tmp_path / "csc_hackney.yaml"
    records.write_text(HACKNEY_RECORDS)
    async with Partnership(tmp_path / "state", policies, world=shared_world,
                           clock=FixedClock(CLOCK)) as partnership:
        partnership.nodes["csc_hackney"].replace_dataset(
            policy_dataset(load_snapshot(policies), "csc_hackney", records))
        yield partnership


def camden_manager(partnership: Partnership) -> HubClient:
    return partnership.client("hub_camden", "mash-console", user="manager.camden", role="mash_manager")


def asked(captured: list[dict[str, Any]]) -> set[str]:
    """The agencies whose node saw a lookup."""
    return {str(e["agency"]) for e in captured if e.get("event") in {"lookup", "lookup_rejected"}}


async def entries(partnership: Partnership) -> list[AuditEvent]:
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 100_000)
    return [decode_entry(r.data).event for r in rows]


async def test_camdens_hub_reaches_hackney_only_under_the_cross_area_agreement(boroughs: Partnership) -> None:
    client = camden_manager(boroughs)
    request = {**S47, "subject": subject(NOAH_FENWICK)}

    with structlog.testing.capture_logs() as captured:
        borough = await client.query(request_id="req-camden", **{**request, "agreement": CAMDEN_AGREEMENT})
    heard = asked(captured)
    assert "csc_hackney" not in heard, "Hackney's node heard of a question asked under Camden's agreement"
    assert {"csc", "police", "health"} <= heard
    hackney = next(a for a in borough.answers if a.agency == "csc_hackney")
    assert hackney.status == WITHHELD
    assert not hackney.records

    with structlog.testing.capture_logs() as captured:
        pan = await client.query(request_id="req-pan", **{**request, "agreement": PAN_AGREEMENT})
    assert asked(captured) == {"csc", "csc_hackney", "police"}  # the pan agreement's record-holding parties
    hackney = next(a for a in pan.answers if a.agency == "csc_hackney")
    assert hackney.status == MATCH
    assert [r.record_id for r in hackney.records] == ["HCK-CP-1"]

    audited = [e for e in await entries(boroughs) if e.kind is AuditKind.DISCLOSURE]
    areas = {(e.request_id, e.agency): (e.details.get("requester_area"), e.details.get("area")) for e in audited}
    assert areas[("req-camden", "csc_hackney")] == ("camden", "hackney")
    assert areas[("req-camden", "csc")] == ("camden", "camden")
    assert areas[("req-pan", "csc_hackney")] == ("camden", "hackney")
    assert areas[("req-pan", "police")] == ("camden", "")
    assert all(e.caller.endswith("/hub_camden/system/mash-console") for e in audited)

    # The entries with areas are part of the tamper-evident log like every other.
    assert boroughs.gateway is not None
    audit = boroughs.gateway.deps.audit
    await audit.checkpoint()
    report = await verify_store(audit.store, load_public_keys(boroughs.state_dir / "keys" / "checkpoint"))
    assert report.ok, report.summary()


async def test_hackneys_agreement_cited_by_camdens_hub_is_refused_and_reaches_no_node(boroughs: Partnership) -> None:
    """Camden's hub is no party to Hackney's agreement: refused before any node is asked, the refusal audited."""
    client = camden_manager(boroughs)
    with structlog.testing.capture_logs() as captured, pytest.raises(grpc.aio.AioRpcError) as caught:
        await client.query(request_id="req-hackney", subject=subject(NOAH_FENWICK),
                           **{**S47, "agreement": HACKNEY_AGREEMENT})
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not a party" in (caught.value.details() or "")
    assert asked(captured) == set()
    [refusal] = [e for e in await entries(boroughs) if e.kind is AuditKind.REFUSAL]
    assert refusal.details["requester_area"] == "camden"


async def test_the_vocabulary_lists_areas_each_agencys_area_and_cross_area_agreements(
    boroughs: Partnership
) -> None:
    stub = policy_grpc.PolicyServiceStub(boroughs.channel(client_credentials(boroughs.pki, "hub_camden",
                                                                             "mash-console")))
    reply = await stub.GetVocabulary(policy_pb.GetVocabularyRequest(), timeout=10)
    assert [(a.name, a.title) for a in reply.areas] == [
        ("camden", "London Borough of Camden"), ("hackney", "London Borough of Hackney")]
    agencies = {a.name: a.area for a in reply.agencies}
    assert (agencies["csc"], agencies["csc_hackney"], agencies["hub_camden"], agencies["police"]) == (
        "camden", "hackney", "camden", "")
    flags = {a.name: a.cross_area for a in reply.agreements}
    assert flags[PAN_AGREEMENT] is True
    assert flags[CAMDEN_AGREEMENT] is False
