"""The Prometheus endpoint, scraped over HTTP from a real gateway with real agency nodes over mutual TLS."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from hub_helpers import SCREENING, subject
from prometheus_client.parser import text_string_to_metric_families

from agency_stubs import World
from agency_stubs.cast import KAI_MERCER, NOAH_FENWICK
from gateway.api.tls import client_credentials
from gateway.demo.partnership import Partnership
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2 as ref_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2_grpc as ref_grpc
from gateway.metrics import GatewayMetrics
from gateway.settings import SettingsError
from gateway.testing import FixedClock


async def scrape(partnership: Partnership) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """The raw exposition text and every sample as (name, sorted labels) -> value."""
    assert partnership.gateway is not None
    assert partnership.gateway.metrics_port is not None
    url = f"http://127.0.0.1:{partnership.gateway.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }
    return text, samples


@pytest.fixture
async def metered(tmp_path: Path, policy_dir: Path, shared_world: World) -> AsyncIterator[Partnership]:
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world,
                           metrics_listen="127.0.0.1:0") as running:
        yield running


async def test_a_hub_query_is_counted_per_rpc_and_per_agency(metered: Partnership) -> None:
    """One answered query: Query counted OK once, each asked agency once (health twice: its answer, and whether it
    holds records under review before a review is created), its audit append timed."""
    client = metered.client("police", "case-system", user="u1", role="mash_researcher_police")
    response = await client.query(subject=subject(), **SCREENING)
    _, samples = await scrape(metered)
    assert samples[("mash_gateway_rpc_requests_total", (("code", "OK"), ("method", "Query")))] == 1
    assert samples[("mash_gateway_rpc_duration_seconds_count", (("method", "Query"),))] == 1
    asked = {a.agency for a in response.answers if a.status != hub_pb.ANSWER_STATUS_WITHHELD}  # never called
    review_checks = {"health": 1}  # health.mental_health is under review for this role and purpose
    for agency in asked:
        assert samples[("mash_gateway_agency_requests_total", (("agency", agency), ("status", "ok")))] == (
            1 + review_checks.get(agency, 0))
    assert samples[("mash_gateway_audit_append_duration_seconds_count", ())] >= 1
    assert samples[("mash_gateway_audit_appends_waiting", ())] == 0
    assert samples[("mash_gateway_requests_in_progress", ())] == 0  # the query was answered before the scrape
    assert 0 <= samples[("mash_gateway_event_loop_lag_seconds", ())] < 1


async def test_a_refused_call_is_counted_under_its_status_code(metered: Partnership) -> None:
    """A request without a purpose is INVALID_ARGUMENT, and the metrics say so (not OK, not UNKNOWN)."""
    client = metered.client("police", "case-system", user="u1", role="mash_researcher_police")
    with pytest.raises(grpc.aio.AioRpcError):
        await client.query(subject=subject(), **{**SCREENING, "purpose": ""})
    _, samples = await scrape(metered)
    assert samples[("mash_gateway_rpc_requests_total", (("code", "INVALID_ARGUMENT"), ("method", "Query")))] == 1
    assert ("mash_gateway_rpc_requests_total", (("code", "OK"), ("method", "Query"))) not in samples


async def test_an_unreachable_agency_is_counted_as_unavailable(metered: Partnership) -> None:
    """A stopped node shows as `unavailable` for that agency only."""
    await metered.stop_node("education")
    client = metered.client("police", "case-system", user="u1", role="mash_researcher_police")
    await client.query(subject=subject(), **SCREENING)
    _, samples = await scrape(metered)
    statuses = {dict(labels)["agency"]: dict(labels)["status"]
                for (name, labels), _ in samples.items() if name == "mash_gateway_agency_requests_total"}
    assert statuses.pop("education") == "unavailable"
    assert set(statuses.values()) == {"ok"}


async def test_policy_version_and_checkpoint_age_are_reported(metered: Partnership) -> None:
    """The active policy version is an info label; after a checkpoint its age is a small non-negative number."""
    assert metered.gateway is not None
    deps = metered.gateway.deps
    _, before = await scrape(metered)
    assert not any(name == "mash_gateway_checkpoint_age_seconds" for name, _ in before)
    await deps.audit.checkpoint()
    _, samples = await scrape(metered)
    assert samples[("mash_gateway_policy_info", (("version", deps.policy.version),))] == 1
    assert 0 <= samples[("mash_gateway_checkpoint_age_seconds", ())] < 60


async def test_metrics_never_carry_identifiers(metered: Partnership) -> None:
    """After queries naming a subject, the exposition holds no NHS number or name from them."""
    client = metered.client("police", "case-system", user="u1", role="mash_researcher_police")
    await client.query(subject=subject(), **SCREENING)
    text, _ = await scrape(metered)
    for value in (KAI_MERCER.nhs_number, KAI_MERCER.family_name, KAI_MERCER.given_name, "u1"):
        assert value not in text


async def test_metrics_are_off_unless_configured(partnership: Partnership) -> None:
    """Without `metrics_listen` no endpoint is opened and nothing is metered."""
    assert partnership.gateway is not None
    assert partnership.gateway.metrics_port is None
    assert partnership.gateway.deps.metrics is None


async def test_a_malformed_metrics_address_is_a_settings_error() -> None:
    """`metrics_listen` without a port number is refused as a settings error, not a crash."""
    with pytest.raises(SettingsError, match="host:port"):
        GatewayMetrics().serve("127.0.0.1")


async def test_a_breached_referral_deadline_is_counted_once_and_shown_as_overdue(
        tmp_path: Path, policy_dir: Path, shared_world: World) -> None:
    """A red referral left past its 4 working hours: one breach counted (not again), one overdue in the gauge."""
    clock = FixedClock()  # Thursday 09:00 UTC, a working day
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world, clock=clock,
                           metrics_listen="127.0.0.1:0") as running:
        assert running.gateway is not None
        assert running.gateway.deps.sweeper is not None
        sweeper = running.gateway.deps.sweeper
        police = ref_grpc.ReferralServiceStub(running.channel(client_credentials(running.pki, "police", "case-system")))
        hub = ref_grpc.ReferralServiceStub(running.channel(client_credentials(running.pki, "hub", "mash-console")))
        submitted = await police.SubmitReferral(ref_pb.SubmitReferralRequest(
            mash="children", subject=common_pb2.SubjectIdentifiers(**subject(NOAH_FENWICK)), concern="A concern",
            categories=["neglect"], borough="hackney"), metadata=(("x-mash-user", "pc.1"),
                                                                   ("x-mash-role", "police_officer")), timeout=10)
        await hub.RateReferral(ref_pb.RateReferralRequest(referral_id=submitted.referral.referral_id, rating="red"),
                               metadata=(("x-mash-user", "m.1"), ("x-mash-role", "mash_manager")), timeout=10)
        breaches = ("mash_gateway_referral_breaches_total", (("mash", "children"), ("rating", "red"),
                                                             ("step", "research")))
        overdue = ("mash_gateway_referrals_overdue", (("mash", "children"), ("rating", "red")))
        assert await sweeper.sweep() == 0
        _, samples = await scrape(running)
        assert breaches not in samples
        assert overdue not in samples
        clock.advance(5 * 3600)
        assert await sweeper.sweep() == 1
        assert await sweeper.sweep() == 0
        text, samples = await scrape(running)
        assert samples[breaches] == 1
        assert samples[overdue] == 1
        assert NOAH_FENWICK.family_name not in text
        assert submitted.referral.referral_id not in text
