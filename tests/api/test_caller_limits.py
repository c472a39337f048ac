"""Per-caller limits over real mTLS: RESOURCE_EXHAUSTED with a retry hint, one audit entry per window."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from hub_helpers import SCREENING, error_reason, rich_status, subject

from agency_stubs import World
from gateway.audit import decode_entry
from gateway.demo.partnership import Partnership
from gateway.domain import AuditEvent, AuditKind


def retry_delay(exc: grpc.aio.AioRpcError) -> float:
    for detail in rich_status(exc).details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    raise AssertionError("no RetryInfo detail in the status")


async def events(partnership: Partnership) -> list[AuditEvent]:
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 10_000)
    return [decode_entry(r.data).event for r in rows]


async def test_a_caller_over_its_rate_gets_resource_exhausted_with_a_retry_hint_and_one_audit_entry(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """Past its burst a certificate's calls are RESOURCE_EXHAUSTED / RATE_LIMITED with a RetryInfo delay;
    thirty refusals write one audit entry, ask no agency, and another certificate is still served."""
    limits = {"identity_rate": 0.01, "identity_burst": 2, "limit_audit_window": 600.0}
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world, settings=limits) as partnership:
        csc = partnership.client("csc", "case-system", user="sw.1", role="social_worker")
        for _ in range(2):
            await csc.query(subject=subject(), **SCREENING)
        before = len(await events(partnership))
        for _ in range(30):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await csc.query(subject=subject(), **SCREENING)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error_reason(caught.value) == "RATE_LIMITED"
            assert retry_delay(caught.value) > 1
        (refusal,) = (await events(partnership))[before:]
        assert (refusal.kind, refusal.status) == (AuditKind.REFUSAL, "RESOURCE_EXHAUSTED")
        assert refusal.details["refused_since_last_entry"] == "1"
        assert refusal.reason.startswith("RATE_LIMITED")
        police = partnership.client("police", "case-system", user="pc.1", role="police_officer")
        assert (await police.query(subject=subject(), **SCREENING)).answers


async def test_a_user_with_a_call_in_flight_is_held_back_while_a_colleague_is_served(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """With one call in flight per user, a second call by the same practitioner while a slow one runs is
    CONCURRENCY_LIMITED; a colleague behind the same certificate is served, and so is the first user once
    the slow call has ended."""
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world, settings={"user_concurrency": 1},
                           node_latency={"health": 1.0}) as partnership:
        first = partnership.client("csc", "case-system", user="sw.1", role="social_worker")
        colleague = first.as_role("social_worker", user="sw.2")
        slow = asyncio.ensure_future(first.query(subject=subject(), **SCREENING))
        await asyncio.sleep(0.3)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await first.query(subject=subject(), **SCREENING)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_reason(caught.value) == "CONCURRENCY_LIMITED"
        assert retry_delay(caught.value) > 0
        assert (await colleague.query(subject=subject(), **SCREENING)).answers
        assert (await slow).answers
        assert (await first.query(subject=subject(), **SCREENING)).answers
