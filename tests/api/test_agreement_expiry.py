"""Agreement expiry on a real gateway over mTLS: reported ahead by health and metrics, renewed by a reload,
and after the last day only the requests citing the agreement are refused while the gateway keeps serving."""

from __future__ import annotations

import asyncio
import shutil
import urllib.request
from datetime import UTC, date, datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from hub_helpers import SCREENING, field_violations, subject
from prometheus_client.parser import text_string_to_metric_families

from agency_stubs import World
from gateway.agreement_health import AGREEMENTS_HEALTH, AgreementHealth
from gateway.api.tls import client_credentials
from gateway.demo.partnership import Partnership
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.generated.mash.gateway.v1 import policy_service_pb2_grpc as policy_grpc
from gateway.testing import FixedClock

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ENDING = ("adult-safeguarding-isa-2026", "early-help-isa-2026", "housing-partnership-2026",
          "mash-analysis-isa-2026", "mash-isa-2026")  # each ends on 2027-12-31
DAY = 24 * 3600.0


async def _health(partnership: Partnership) -> dict[str, int]:
    stub = health_pb2_grpc.HealthStub(partnership.channel(client_credentials(partnership.pki, "hub",
                                                                             "mash-console")))
    names = ("", "mash.gateway.v1.HubService", "mash.gateway.v1.AuditService", AGREEMENTS_HEALTH)
    return {name: (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)).status
            for name in names}


async def _metrics(partnership: Partnership) -> dict[tuple[str, str], float]:
    """Agreement samples as (metric, label value) -> value."""
    assert partnership.gateway is not None
    url = f"http://127.0.0.1:{partnership.gateway.metrics_port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    return {(s.name, next(iter(s.labels.values()), "")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if "agreement" in s.name}


async def _refresh(partnership: Partnership) -> None:
    """What the gateway's own periodic check does (every few seconds), done now."""
    assert partnership.gateway is not None
    await partnership.gateway.agreement_health.refresh()


def _renewed(policy_dir: Path, tmp_path: Path) -> Path:
    """A copy of the shipped policy whose agreements run two years longer."""
    copy = tmp_path / "policies"
    shutil.copytree(policy_dir, copy)
    agreements = copy / "agreements.yaml"
    agreements.write_text(agreements.read_text().replace("valid_until: 2027-12-31", "valid_until: 2029-12-31"))
    return copy


async def test_an_agreement_ending_soon_is_reported_and_after_it_ends_only_requests_citing_it_are_refused(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """46 days ahead: the Agreements health entry is NOT_SERVING while the server and services stay SERVING,
    and the metrics count the agreements ending within 60 (not 30) days. Past the last day, with no restart:
    requests citing the agreement are INVALID_ARGUMENT naming it, the gateway serves and reloads, health is
    back to SERVING (an ended agreement is history) and the metrics count it as ended."""
    clock = FixedClock(datetime(2027, 11, 15, 9, 0, tzinfo=UTC))
    live = tmp_path / "live"
    shutil.copytree(policy_dir, live)
    async with Partnership(tmp_path / "state", live, world=shared_world, clock=clock,
                           metrics_listen="127.0.0.1:0") as partnership:
        client = partnership.client("police", "case-system", user="r.1", role="mash_researcher_police")
        assert await _health(partnership) == {"": SERVING, "mash.gateway.v1.HubService": SERVING,
                                              "mash.gateway.v1.AuditService": SERVING, AGREEMENTS_HEALTH: NOT_SERVING}
        samples = await _metrics(partnership)
        assert {a: samples[("mash_gateway_agreement_days_left", a)] for a in ENDING} == dict.fromkeys(ENDING, 46)
        assert samples[("mash_gateway_agreement_days_left", "mash-isa-2024")] < 0
        assert samples[("mash_gateway_agreement_expiry_timestamp_seconds", "mash-isa-2026")] == \
            datetime(2028, 1, 1, tzinfo=UTC).timestamp()
        assert samples[("mash_gateway_agreements_expiring", "60")] == len(ENDING)
        assert samples[("mash_gateway_agreements_expiring", "30")] == 0
        assert samples[("mash_gateway_agreements_ended", "")] == 1
        await client.query(subject=subject(), **SCREENING)

        clock.advance(40 * DAY)  # 6 days left: the metrics move with the date, no reload needed
        samples = await _metrics(partnership)
        assert samples[("mash_gateway_agreement_days_left", "mash-isa-2026")] == 6
        assert samples[("mash_gateway_agreements_expiring", "30")] == len(ENDING)

        clock.advance(8 * DAY)  # 2028-01-02: ended
        await _refresh(partnership)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.query(subject=subject(), **SCREENING)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value)["agreement"] == "'mash-isa-2026' expired on 2027-12-31"
        # An edited policy still citing the ended agreements is checked and activated, not refused.
        with (live / "agreements.yaml").open("a") as edited:
            edited.write("# reviewed after the 2026 agreements ended\n")
        admin = policy_grpc.PolicyServiceStub(partnership.channel(client_credentials(partnership.pki, "hub",
                                                                                     "policy-admin")))
        reloaded = await admin.ReloadPolicy(policy_pb.ReloadPolicyRequest(),
                                            metadata=(("x-mash-user", "ig.officer.1"),), timeout=30)
        assert reloaded.activated
        await _refresh(partnership)
        assert await _health(partnership) == {"": SERVING, "mash.gateway.v1.HubService": SERVING,
                                              "mash.gateway.v1.AuditService": SERVING, AGREEMENTS_HEALTH: SERVING}
        samples = await _metrics(partnership)
        assert samples[("mash_gateway_agreement_days_left", "mash-isa-2026")] == -2
        assert samples[("mash_gateway_agreements_expiring", "60")] == 0
        assert samples[("mash_gateway_agreements_ended", "")] == len(ENDING) + 1  # and mash-isa-2024


async def test_renewing_the_agreements_by_a_reload_clears_the_warning(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """A policy whose agreements run longer, activated by ReloadPolicy, turns the Agreements entry SERVING."""
    clock = FixedClock(datetime(2027, 12, 20, 9, 0, tzinfo=UTC))
    renewed = _renewed(policy_dir, tmp_path)
    live = tmp_path / "live"
    shutil.copytree(policy_dir, live)
    async with Partnership(tmp_path / "state", live, world=shared_world, clock=clock,
                           metrics_listen="127.0.0.1:0") as partnership:
        assert (await _health(partnership))[AGREEMENTS_HEALTH] == NOT_SERVING
        shutil.copy(renewed / "agreements.yaml", live / "agreements.yaml")
        admin = policy_grpc.PolicyServiceStub(partnership.channel(client_credentials(partnership.pki, "hub",
                                                                                     "policy-admin")))
        reloaded = await admin.ReloadPolicy(policy_pb.ReloadPolicyRequest(),
                                            metadata=(("x-mash-user", "ig.officer.1"),), timeout=30)
        assert reloaded.activated
        await _refresh(partnership)
        assert (await _health(partnership))[AGREEMENTS_HEALTH] == SERVING
        samples = await _metrics(partnership)
        assert samples[("mash_gateway_agreement_days_left", "mash-isa-2026")] == (date(2029, 12, 31) -
                                                                                   date(2027, 12, 20)).days
        assert samples[("mash_gateway_agreements_expiring", "60")] == 0


async def test_the_health_entry_follows_the_date_by_itself() -> None:
    """The periodic check publishes a new state when the date moves, without being asked."""
    clock = FixedClock(datetime(2027, 10, 1, 9, 0, tzinfo=UTC))
    health = HealthServicer()
    checker = AgreementHealth(lambda: {"isa": date(2027, 12, 31)}, lambda: "v1", clock, health, interval=0.01)
    await checker.start()
    try:
        request = health_pb2.HealthCheckRequest(service=AGREEMENTS_HEALTH)
        assert (await health.Check(request, None)).status == SERVING  # 91 days left
        clock.advance(40 * DAY)
        for _ in range(500):
            if (await health.Check(request, None)).status == NOT_SERVING:
                break
            await asyncio.sleep(0.01)
        assert (await health.Check(request, None)).status == NOT_SERVING
    finally:
        await checker.stop()
