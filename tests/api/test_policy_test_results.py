"""PolicyService.RunPolicyTests over real mTLS: the active policy's shipped tests, each case with its file and
line, what it expects and what the policy gives; for policy administrators and auditors only."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest
from hub_helpers import error_reason

from agency_stubs import World
from gateway.api.tls import client_credentials
from gateway.audit import decode_entry
from gateway.demo.partnership import Partnership
from gateway.domain import AuditKind
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.generated.mash.gateway.v1 import policy_service_pb2_grpc as policy_grpc
from gateway.policy.policy_tests import load_test_cases
from gateway.workflow.policy_tests import load_deadline_cases

ADMIN = (("x-mash-user", "ig.officer.1"),)
WRONG_CASE = """
  - name: A deliberately wrong expectation the console must show as failed
    role: mash_researcher_health
    purpose: safeguarding_screening
    agency: health
    category: health.mental_health
    expect: EXISTS
"""


def _stub(partnership: Partnership, agency: str, system: str) -> policy_grpc.PolicyServiceAsyncStub:
    return policy_grpc.PolicyServiceStub(partnership.channel(client_credentials(partnership.pki, agency, system)))


async def test_every_shipped_case_comes_back_passed_with_its_file_line_expectation_and_outcome(
    partnership: Partnership, policy_dir: Path
) -> None:
    reply = await _stub(partnership, "hub", "policy-admin").RunPolicyTests(policy_pb.RunPolicyTestsRequest(),
                                                                          metadata=ADMIN, timeout=60)
    access = load_test_cases(policy_dir).cases
    deadlines, _ = load_deadline_cases(policy_dir)
    assert len(reply.results) == len(access) + len(deadlines) > 0, "every access and deadline case is listed"
    assert (reply.passed, reply.failed) == (len(reply.results), 0), [r.problems for r in reply.results if not r.passed]
    assert reply.tests_version == reply.policy_version, "the tests come from the active policy's own files"
    assert [(r.file, r.line) for r in reply.results] == sorted((r.file, r.line) for r in reply.results)
    first = next(r for r in reply.results if r.kind == "access" and r.file == "tests/reviews.yaml")
    case = next(c for c in access if (c.file, c.line) == (first.file, first.line))
    assert (first.name, first.role, first.purpose, first.agency, first.category) == (
        case.name, case.role, case.purpose, case.agency, case.category)
    assert first.expected == first.got == case.expect.name
    deadline = next(r for r in reply.results if r.kind == "deadline")
    assert deadline.expected == deadline.got
    assert deadline.file.startswith("tests/workflow/")


async def test_a_wrong_expectation_is_reported_failed_with_what_the_policy_gives(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """A case added to the directory after activation runs against the active policy, fails with expected and
    got, and the answer says the tests come from a newer version of the directory than the one serving."""
    live = tmp_path / "policies"
    shutil.copytree(policy_dir, live)
    async with Partnership(tmp_path / "state", live, world=shared_world) as partnership:
        reviews = live / "tests" / "reviews.yaml"
        reviews.write_text(reviews.read_text() + WRONG_CASE)
        reply = await _stub(partnership, "hub", "audit-console").RunPolicyTests(
            policy_pb.RunPolicyTestsRequest(), timeout=60)
    (failed,) = [r for r in reply.results if not r.passed]
    assert (failed.name, failed.file) == ("A deliberately wrong expectation the console must show as failed",
                                          "tests/reviews.yaml")
    assert failed.line == len(reviews.read_text().splitlines()) - 5, "the line of the case's first key"
    assert (failed.expected, failed.got) == ("EXISTS", "FULL")
    assert failed.problems
    assert "expected EXISTS, got FULL" in failed.problems[0]
    assert reply.failed == 1
    assert reply.tests_version != reply.policy_version


async def test_a_certificate_not_bound_to_policy_admin_or_auditor_is_refused_and_audited(
    partnership: Partnership
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _stub(partnership, "police", "case-system").RunPolicyTests(
            policy_pb.RunPolicyTestsRequest(), metadata=(("x-mash-user", "pc.1"), ("x-mash-role", "police_officer")),
            timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "ROLE_NOT_BOUND"
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 1000)
    refusals = [e for e in (decode_entry(r.data).event for r in rows) if e.kind is AuditKind.REFUSAL]
    assert [(e.status, e.details.get("rpc")) for e in refusals] == [("PERMISSION_DENIED", "RunPolicyTests")]
