"""`mash-gateway reviews …` against a running partnership: list, show, approve, decline and outcome."""

from __future__ import annotations

import json

import pytest
from hub_helpers import SCREENING, subject

from agency_stubs.cast import JODIE_MERCER
from gateway.cli.main import build_parser
from gateway.cli.reviews_cmd import EXIT_OK, EXIT_REFUSED, run_async
from gateway.demo.partnership import Partnership
from gateway.generated.mash.gateway.v1 import common_pb2

pytestmark = pytest.mark.slow

REVIEWER = ("--agency", "health", "--user", "dp.1", "--role", "health_designated_professional")
REQUESTER = ("--agency", "police", "--system", "case-system", "--user", "r.police", "--role",
             "mash_researcher_police")


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as on a wide terminal, so that cells are not folded across lines."""
    monkeypatch.setenv("COLUMNS", "240")


async def _run(partnership: Partnership, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    action, *rest = argv
    args = build_parser().parse_args(["reviews", action, "--gateway", partnership.address, "--pki-dir",
                                      str(partnership.pki.root), *rest])
    code = await run_async(args)
    out, err = capsys.readouterr()
    return code, out, err


async def test_a_reviewer_works_a_review_from_the_command_line(partnership: Partnership,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """list shows the pending review; show opens it; approve at PERTINENT; a later decline is refused (exit 1)."""
    researcher = partnership.client("police", "case-system", user="r.police", role="mash_researcher_police")
    response = await researcher.query(subject=common_pb2.SubjectIdentifiers(**subject(JODIE_MERCER)), **SCREENING)
    review_id = next(a.review.review_id for a in response.answers if a.agency == "health")
    capsys.readouterr()
    code, out, _ = await _run(partnership, capsys, "list", *REVIEWER)
    assert code == EXIT_OK
    assert review_id in out
    assert "PENDING_REVIEW" in out
    code, out, _ = await _run(partnership, capsys, "show", review_id, *REVIEWER)
    assert code == EXIT_OK
    assert "HLT-MH-C0001" in out
    code, out, _ = await _run(partnership, capsys, "approve", review_id, "--level", "PERTINENT", "--json", *REVIEWER)
    assert code == EXIT_OK
    decided = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert decided["review"]["state"] == "REVIEW_STATE_APPROVED"
    code, _, err = await _run(partnership, capsys, "decline", review_id, "--reason", "too late", *REVIEWER)
    assert code == EXIT_REFUSED
    assert "FAILED_PRECONDITION" in err
    assert "REVIEW_ALREADY_DECIDED" in err
    code, out, _ = await _run(partnership, capsys, "outcome", review_id, *REQUESTER)
    assert code == EXIT_OK
    assert "APPROVED" in out
    assert "HLT-MH-C0001" in out


async def test_outcome_wait_returns_when_the_reviewer_decides(partnership: Partnership,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`outcome --wait` watches the review: pending at first, it prints the release once health approves; with
    nobody deciding it prints the review as pending when the wait runs out."""
    import asyncio

    researcher = partnership.client("police", "case-system", user="r.police", role="mash_researcher_police")
    response = await researcher.query(subject=common_pb2.SubjectIdentifiers(**subject(JODIE_MERCER)), **SCREENING)
    review_id = next(a.review.review_id for a in response.answers if a.agency == "health")
    capsys.readouterr()
    code, out, _ = await _run(partnership, capsys, "outcome", review_id, "--wait", "0.5", *REQUESTER)
    assert code == EXIT_OK
    assert "PENDING_REVIEW" in out
    waiting = asyncio.ensure_future(_run(partnership, capsys, "outcome", review_id, "--wait", "10", "--json",
                                         *REQUESTER))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    args = build_parser().parse_args(["reviews", "approve", review_id, "--gateway", partnership.address,
                                      "--pki-dir", str(partnership.pki.root), *REVIEWER])
    assert await run_async(args) == EXIT_OK
    code, out, _ = await asyncio.wait_for(waiting, 10)
    assert code == EXIT_OK
    released = json.loads(next(line for line in out.splitlines() if '"answer"' in line))
    assert released["review"]["state"] == "REVIEW_STATE_APPROVED"
    assert [r["record_id"] for r in released["answer"]["records"]] == ["HLT-MH-C0001"]
