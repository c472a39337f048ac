"""Caller-chosen request ids over real mTLS: a retry gets the first answer, a different request is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from hub_helpers import S47, SCREENING, field_violations, subject

from agency_stubs import World
from gateway.audit import decode_entry
from gateway.demo.partnership import HubClient, Partnership
from gateway.domain import AuditEvent, AuditKind


async def events(partnership: Partnership, kind: AuditKind) -> list[AuditEvent]:
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 10_000)
    return [e for e in (decode_entry(r.data).event for r in rows) if e.kind is kind]


@pytest.fixture
async def running(tmp_path: Path, policy_dir: Path, shared_world: World) -> asyncio.AsyncIterator[Partnership]:
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world) as partnership:
        yield partnership


def social_worker(partnership: Partnership) -> HubClient:
    return partnership.client("csc", "case-system", user="sw.1", role="social_worker")


async def test_the_same_query_retried_gets_the_same_receipts_and_no_second_disclosure(running: Partnership) -> None:
    """A retried Query with the same id and request returns byte-identical answers and receipts, and the
    audit log holds one disclosure per agency, not two."""
    client = social_worker(running)
    first = await client.query(request_id="req-retry-1", subject=subject(), **S47)
    disclosed = len(await events(running, AuditKind.DISCLOSURE))
    again = await client.query(request_id="req-retry-1", subject=subject(), **S47)
    assert again.SerializeToString(deterministic=True) == first.SerializeToString(deterministic=True)
    assert all(a.receipt.leaf_hash for a in again.answers)
    assert len(await events(running, AuditKind.DISCLOSURE)) == disclosed


async def test_concurrent_retries_share_one_disclosure(running: Partnership) -> None:
    """Five copies of one request sent at once (a client retrying on a timeout) are answered once."""
    client = social_worker(running)
    answers = await asyncio.gather(*(client.query(request_id="req-retry-2", subject=subject(), **S47)
                                     for _ in range(5)))
    assert len({a.SerializeToString(deterministic=True) for a in answers}) == 1
    disclosures = [e for e in await events(running, AuditKind.DISCLOSURE) if e.request_id == "req-retry-2"]
    assert len(disclosures) == len(answers[0].answers)


async def test_a_retried_stream_and_screening_replay_their_first_answers(running: Partnership) -> None:
    """StreamQuery and ScreenReferral retried with the same id give the same answers and receipts."""
    client = social_worker(running)
    streamed = await client.stream(request_id="req-retry-3", subject=subject(), **S47)
    disclosed = len(await events(running, AuditKind.DISCLOSURE))
    assert await client.stream(request_id="req-retry-3", subject=subject(), **S47) == streamed
    screened = await client.screen(request_id="req-retry-4", subject=subject(), **SCREENING)
    assert await client.screen(request_id="req-retry-4", subject=subject(), **SCREENING) == screened
    assert len(await events(running, AuditKind.DISCLOSURE)) == disclosed + 1


@pytest.mark.parametrize("change", ["case_reference", "subject", "user", "rpc"])
async def test_a_request_id_reused_for_a_different_request_is_refused_and_audited(
    running: Partnership, change: str
) -> None:
    """The same id with another case reference, another subject, from another user, or on another RPC is
    INVALID_ARGUMENT on request_id, audited as a refusal marked as a reused id, and nothing is disclosed."""
    client = social_worker(running)
    await client.query(request_id="req-reuse-1", subject=subject(), **S47)
    disclosed = len(await events(running, AuditKind.DISCLOSURE))
    request = {"request_id": "req-reuse-1", "subject": subject(), **S47}
    call = client.query
    if change == "case_reference":
        request["case_reference"] = "MASH-2026-0099"
    elif change == "subject":
        request["subject"] = {**subject(), "given_name": "Someone", "nhs_number": ""}
    elif change == "user":
        call = client.as_role("social_worker", user="sw.2").query
    else:
        call = client.stream  # type: ignore[assignment]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(**request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in field_violations(caught.value)
    (refusal,) = await events(running, AuditKind.REFUSAL)
    assert (refusal.request_id, refusal.details.get("request_id")) == ("req-reuse-1", "reused")
    assert len(await events(running, AuditKind.DISCLOSURE)) == disclosed


async def test_a_refused_first_attempt_does_not_reserve_its_request_id(running: Partnership) -> None:
    """A request refused as invalid is forgotten, so the corrected request may use the same id."""
    client = social_worker(running)
    with pytest.raises(grpc.aio.AioRpcError):
        await client.query(request_id="req-fix-1", subject=subject(), **{**S47, "purpose": "curiosity"})
    assert (await client.query(request_id="req-fix-1", subject=subject(), **S47)).answers
