"""AuditService.ListEntries over real mTLS: newest first by default, the total, paging with tokens, and filters
checked against the vocabulary, with the same answers as `mash-gateway audit list`."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stderr, redirect_stdout

import grpc
import pytest
from hub_helpers import SCREENING, field_violations, subject

from gateway.api.tls import client_credentials
from gateway.audit import decode_entry
from gateway.cli.main import main as cli
from gateway.demo.partnership import Partnership
from gateway.domain import AuditKind
from gateway.generated.mash.gateway.v1 import audit_service_pb2 as audit_pb
from gateway.generated.mash.gateway.v1 import audit_service_pb2_grpc as audit_grpc

OLDEST_FIRST = audit_pb.LIST_ENTRIES_ORDER_OLDEST_FIRST
NEWEST_FIRST = audit_pb.LIST_ENTRIES_ORDER_NEWEST_FIRST


def _stub(partnership: Partnership) -> audit_grpc.AuditServiceAsyncStub:
    return audit_grpc.AuditServiceStub(partnership.channel(client_credentials(partnership.pki, "hub",
                                                                              "audit-console")))


async def _queries(partnership: Partnership, n: int) -> None:
    client = partnership.client("police", "case-system", user="r.1", role="mash_researcher_police")
    for _ in range(n):
        await client.query(subject=subject(), **SCREENING)


async def _list(stub: audit_grpc.AuditServiceAsyncStub,
                request: audit_pb.ListEntriesRequest) -> list[audit_pb.ListEntriesResponse]:
    return [m async for m in stub.ListEntries(request, timeout=10)]


async def _events(partnership: Partnership) -> list[tuple[AuditKind, dict[str, str]]]:
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 100_000)
    return [(e.kind, dict(e.details)) for e in (decode_entry(r.data).event for r in rows)]


async def test_entries_come_newest_first_by_default_with_the_total_on_the_first_message(
        partnership: Partnership) -> None:
    """An old-style request (no order, no paging) gets every match, newest first, the total on message one."""
    await _queries(partnership, 2)
    stub = _stub(partnership)
    default = await _list(stub, audit_pb.ListEntriesRequest(agency="police"))
    newest = await _list(stub, audit_pb.ListEntriesRequest(agency="police", order=NEWEST_FIRST))
    oldest = await _list(stub, audit_pb.ListEntriesRequest(agency="police", order=OLDEST_FIRST))
    indexes = [m.entry.index for m in default]
    assert len(indexes) == 2
    assert indexes == sorted(indexes, reverse=True)
    assert [m.entry.index for m in newest] == indexes
    assert [m.entry.index for m in oldest] == indexes[::-1]
    for answer in (default, newest, oldest):
        assert [m.HasField("total_size") for m in answer] == [True, False]
        assert answer[0].total_size == 2
        assert all(m.next_page_token == "" for m in answer)
    # start_index narrows the listing and the total alike.
    narrowed = await _list(stub, audit_pb.ListEntriesRequest(agency="police", start_index=indexes[0]))
    assert [(m.entry.index, m.total_size) for m in narrowed] == [(indexes[0], 1)]
    # limit (without paging) still caps the answer; the total still counts every match.
    limited = await _list(stub, audit_pb.ListEntriesRequest(agency="police", limit=1))
    assert [(m.entry.index, m.total_size) for m in limited] == [(indexes[0], 2)]


async def test_nothing_matching_is_an_empty_stream(partnership: Partnership) -> None:
    """No entry matches: no message at all (an old client sees an empty listing, not a blank entry)."""
    assert await _list(_stub(partnership), audit_pb.ListEntriesRequest(agency="housing")) == []


@pytest.mark.parametrize("order", [NEWEST_FIRST, OLDEST_FIRST])
async def test_pages_cover_every_match_once_with_the_same_total_while_the_log_grows(
        partnership: Partnership, order: int) -> None:
    """Paging by token visits each matching entry once, in order, every page reporting the total counted at the
    first page, although every page's read (and a new query mid-way) adds entries to the log."""
    await _queries(partnership, 2)  # 6 disclosures + the refusal-free screening entries
    stub = _stub(partnership)
    everything = [m.entry.index for m in await _list(stub, audit_pb.ListEntriesRequest(order=order))]
    pages: list[list[audit_pb.ListEntriesResponse]] = []
    token = ""
    while True:
        page = await _list(stub, audit_pb.ListEntriesRequest(order=order, page_size=5, page_token=token))
        pages.append(page)
        assert 1 <= len(page) <= 5
        assert page[0].total_size == len(everything) + 1  # the first listing's own read entry is counted
        assert all(m.next_page_token == "" for m in page[:-1])
        token = page[-1].next_page_token
        if len(pages) == 1:
            await _queries(partnership, 1)  # new entries after the first page are not listed
        if not token:
            break
    listed = [m.entry.index for page in pages for m in page]
    assert len(listed) == len(set(listed)) == pages[0][0].total_size
    assert listed == sorted(listed, reverse=order == NEWEST_FIRST)
    assert set(everything) < set(listed)
    reads = [d for kind, d in await _events(partnership) if kind is AuditKind.AUDIT_ACCESS]
    assert len(reads) == 1 + len(pages)  # every page is a read of the log, recorded
    assert sum("page_of" in d for d in reads) == len(pages) - 1


async def test_a_page_token_only_continues_its_own_listing(partnership: Partnership) -> None:
    """A token used with other filters, another order, without a page size or mangled is INVALID_ARGUMENT,
    and each refusal is audited; a page size with a limit too is refused."""
    await _queries(partnership, 1)
    stub = _stub(partnership)
    first = await _list(stub, audit_pb.ListEntriesRequest(page_size=2))
    token = first[-1].next_page_token
    assert token
    # The same filter spelled in another case is the same listing.
    assert await _list(stub, audit_pb.ListEntriesRequest(page_size=2, page_token=token))
    cases = [
        (audit_pb.ListEntriesRequest(page_size=2, page_token=token, agency="police"), "page_token"),
        (audit_pb.ListEntriesRequest(page_size=2, page_token=token, order=OLDEST_FIRST), "page_token"),
        (audit_pb.ListEntriesRequest(page_size=2, page_token=token, start_index=1), "page_token"),
        (audit_pb.ListEntriesRequest(page_token=token), "page_size"),
        (audit_pb.ListEntriesRequest(page_size=2, page_token=token[:-3] + "xyz"), "page_token"),
        (audit_pb.ListEntriesRequest(page_size=2, page_token="not a token"), "page_token"),
        (audit_pb.ListEntriesRequest(page_size=2, limit=3), "limit"),
    ]
    for request, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _list(stub, request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert list(field_violations(caught.value)) == [field]
    refusals = [d["rpc"] for kind, d in await _events(partnership) if kind is AuditKind.REFUSAL]
    assert refusals == ["ListEntries"] * len(cases)


async def test_undeclared_names_are_refused_naming_the_closest_declared_one(partnership: Partnership) -> None:
    """`helth`, `withheld` in the wrong case is accepted; `withheldd`, an unknown purpose and role are
    INVALID_ARGUMENT, each naming the closest declared name without echoing what was typed; audited."""
    await _queries(partnership, 1)
    stub = _stub(partnership)
    matched = await _list(stub, audit_pb.ListEntriesRequest(agency="Health", status="match"))
    assert matched
    assert {m.entry.agency for m in matched} == {"health"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list(stub, audit_pb.ListEntriesRequest(agency="helth", status="withheldd",
                                                      purpose="safeguarding_screning", role="nosuchrolexyz"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(caught.value)
    assert violations["agency"] == "not a declared agency; did you mean 'health'?"
    assert violations["status"] == "not a declared status; did you mean 'WITHHELD'?"
    assert violations["purpose"] == "not a declared purpose; did you mean 'safeguarding_screening'?"
    assert violations["role"].startswith("not a declared role; known: ")
    for typed in ("helth", "withheldd", "safeguarding_screning", "nosuchrolexyz"):
        assert typed not in caught.value.details()
        assert all(typed not in v for v in violations.values())
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _list(stub, audit_pb.ListEntriesRequest(agency="helth" * 20_000))
    assert field_violations(caught.value)["agency"].startswith("not a declared agency; known: ")
    events = await _events(partnership)
    assert events[-1][0] is AuditKind.REFUSAL
    assert events[-1][1]["rpc"] == "ListEntries"


async def test_the_command_line_and_the_api_give_the_same_total_and_order(partnership: Partnership) -> None:
    """`audit list` and ListEntries share one read: the same total and the same newest-first page."""
    await _queries(partnership, 2)
    api = await _list(_stub(partnership), audit_pb.ListEntriesRequest(agency="POLICE", page_size=1))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = await _run_cli(["audit", "list", "--state-dir", str(partnership.state_dir), "--agency", "police",
                               "--policy-dir", str(partnership.policy_dir), "--limit", "1", "--json"])
    assert code == 0
    match = re.search(r"(\d+) matching entries; showing 1 \(newest first\); next page: --before (\d+)", err.getvalue())
    assert match is not None, err.getvalue()
    assert int(match.group(1)) == api[0].total_size == 2
    assert int(match.group(2)) == api[0].entry.index


async def _run_cli(argv: list[str]) -> int:
    import asyncio
    return await asyncio.to_thread(cli, argv)


def test_every_state_an_entry_can_hold_is_a_known_status() -> None:
    """The status filter's vocabulary covers answer, workflow and review states (so none is refused)."""
    from gateway.audit.answers import STATUSES
    from gateway.domain import AnswerStatus
    from gateway.review.model import ReviewState
    from gateway.workflow.referral import State
    for enum in (AnswerStatus, State, ReviewState):
        assert {s.value for s in enum} <= set(STATUSES)

