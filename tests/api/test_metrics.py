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
from agency_stubs.cast import KAI_MERCER
from gateway.demo.partnership import Partnership
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.metrics import GatewayMetrics
from gateway.settings import SettingsError


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
    """One answered query: Query counted OK once, each asked agency once, its audit append timed."""
    client = metered.client("police", "case-system", user="u1", role="mash_researcher_police")
    response = await client.query(subject=subject(), **SCREENING)
    _, samples = await scrape(metered)
    assert samples[("mash_gateway_rpc_requests_total", (("code", "OK"), ("method", "Query")))] == 1
    assert samples[("mash_gateway_rpc_duration_seconds_count", (("method", "Query"),))] == 1
    asked = {a.agency for a in response.answers if a.status != hub_pb.ANSWER_STATUS_WITHHELD}  # never called
    for agency in asked:
        assert samples[("mash_gateway_agency_requests_total", (("agency", agency), ("status", "ok")))] == 1
    assert samples[("mash_gateway_audit_append_duration_seconds_count", ())] >= 1
    assert samples[("mash_gateway_audit_appends_waiting", ())] == 0


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
