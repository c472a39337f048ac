"""AuditService and PolicyService over real mTLS: who may call them, and what they return."""

from __future__ import annotations

import shutil
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from hub_helpers import SCREENING, error_reason, field_violations, subject

from agency_stubs import World
from agency_stubs.cast import KAI_MERCER
from gateway.api.tls import client_credentials
from gateway.audit import (
    PublicKeys,
    SignedCheckpoint,
    decode_entry,
    load_public_keys,
    verify_export,
    verify_inclusion,
)
from gateway.demo.partnership import Partnership
from gateway.domain import AuditEvent, AuditKind
from gateway.generated.mash.gateway.v1 import audit_service_pb2 as audit_pb
from gateway.generated.mash.gateway.v1 import audit_service_pb2_grpc as audit_grpc
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import policy_service_pb2 as policy_pb
from gateway.generated.mash.gateway.v1 import policy_service_pb2_grpc as policy_grpc


def audit_stub(
    partnership: Partnership, agency: str = "hub", system: str = "audit-console"
) -> audit_grpc.AuditServiceAsyncStub:
    return audit_grpc.AuditServiceStub(partnership.channel(client_credentials(partnership.pki, agency, system)))


def policy_stub(
    partnership: Partnership, agency: str = "hub", system: str = "policy-admin"
) -> policy_grpc.PolicyServiceAsyncStub:
    return policy_grpc.PolicyServiceStub(partnership.channel(client_credentials(partnership.pki, agency, system)))


ADMIN = (("x-mash-user", "ig.officer.1"),)


async def _query_kai(partnership: Partnership) -> None:
    client = partnership.client("police", "case-system", user="r.1", role="mash_researcher_police")
    await client.query(subject=subject(), **SCREENING)


async def test_an_auditor_lists_entries_and_proves_one_against_a_signed_checkpoint(partnership: Partnership) -> None:
    """Auditors stream entries (the read itself is audited), then prove one against a signed checkpoint."""
    await _query_kai(partnership)
    stub = audit_stub(partnership)
    entries = [m.entry async for m in stub.ListEntries(audit_pb.ListEntriesRequest(agency="police"), timeout=10)]
    assert entries
    assert all(e.agency == "police" for e in entries)
    reads = [m.entry async for m in stub.ListEntries(
        audit_pb.ListEntriesRequest(kind=audit_pb.AUDIT_ENTRY_KIND_AUDIT_ACCESS), timeout=10)]
    # The answer is the log as it stood when asked: the record of this read itself is not listed.
    assert [(e.details["rpc"], e.details.get("agency")) for e in reads] == [("ListEntries", "police")]
    assert partnership.gateway is not None
    await partnership.gateway.deps.audit.checkpoint()
    latest = (await stub.GetLatestCheckpoint(audit_pb.GetLatestCheckpointRequest(), timeout=10)).checkpoint
    proof = await stub.GetInclusionProof(audit_pb.GetInclusionProofRequest(index=entries[0].index), timeout=10)
    assert proof.tree_size == latest.tree_size
    verify_inclusion(proof.index, proof.tree_size, proof.leaf_hash, list(proof.path), latest.root_hash)
    keys: PublicKeys = load_public_keys(partnership.state_dir / "keys" / "checkpoint")
    keys.verify(SignedCheckpoint(latest.tree_size, latest.root_hash, latest.timestamp.ToDatetime(tzinfo=UTC),
                                 latest.key_id, latest.signature))


async def test_an_auditor_gets_the_verifier_keys_and_a_checkpoint_by_size_and_proofs_say_if_roots_are_signed(
        partnership: Partnership) -> None:
    """GetVerifierKeys gives vkeys that verify GetCheckpoint's signed note; proofs flag unsigned roots."""
    from gateway.audit.note import Verifier, parse_note, verify_note

    await _query_kai(partnership)
    assert partnership.gateway is not None
    signed = await partnership.gateway.deps.audit.checkpoint()
    stub = audit_stub(partnership)
    keys = await stub.GetVerifierKeys(audit_pb.GetVerifierKeysRequest(), timeout=10)
    assert keys.origin
    assert keys.verifier_keys
    got = (await stub.GetCheckpoint(audit_pb.GetCheckpointRequest(tree_size=signed.tree_size), timeout=10)).checkpoint
    assert got.note.startswith(f"{keys.origin}\n{signed.tree_size}\n")
    verify_note(parse_note(got.note), [Verifier.parse(v) for v in keys.verifier_keys])
    proof = await stub.GetInclusionProof(audit_pb.GetInclusionProofRequest(index=0), timeout=10)
    assert (proof.tree_size, proof.root_signed) == (signed.tree_size, True)
    await _query_kai(partnership)  # entries after the checkpoint: no signature covers the larger tree yet
    size = await partnership.gateway.deps.audit.sync()
    unsigned = await stub.GetInclusionProof(audit_pb.GetInclusionProofRequest(index=0, tree_size=size), timeout=10)
    assert not unsigned.root_signed
    consistency = await stub.GetConsistencyProof(audit_pb.GetConsistencyProofRequest(
        first_tree_size=signed.tree_size, second_tree_size=size), timeout=10)
    assert (consistency.first_root_signed, consistency.second_root_signed) == (True, False)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetCheckpoint(audit_pb.GetCheckpointRequest(tree_size=signed.tree_size + 1000), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_subject_access_over_grpc_finds_the_childs_entries(partnership: Partnership) -> None:
    """Identifiers in, every entry about that person out, found through keyed tokens."""
    await _query_kai(partnership)
    stub = audit_stub(partnership)
    request = audit_pb.SubjectAccessRequest(subject=common_pb2.SubjectIdentifiers(nhs_number=KAI_MERCER.nhs_number))
    found = [m.entry async for m in stub.SubjectAccess(request, timeout=10)]
    disclosures = [e for e in found if e.kind == audit_pb.AUDIT_ENTRY_KIND_DISCLOSURE]
    assert len(disclosures) == len(partnership.nodes)  # one per record-holding agency asked
    assert all(e.subject_tokens and e.sealed_identifiers for e in disclosures)
    (search,) = [e for e in found if e.kind == audit_pb.AUDIT_ENTRY_KIND_AUDIT_ACCESS]
    assert (search.caller, search.details["rpc"]) == ("spiffe://mash.local/agency/hub/system/audit-console",
                                                      "SubjectAccess")
    report = await stub.VerifyLog(audit_pb.VerifyLogRequest(), timeout=10)
    assert report.ok, report.summary


async def _refusals(partnership: Partnership) -> list[tuple[str, str, str]]:
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 1000)
    events = [decode_entry(r.data).event for r in rows]
    return [(e.caller, e.status, e.details.get("rpc", "")) for e in events if e.kind is AuditKind.REFUSAL]


async def test_only_auditor_certificates_may_use_the_audit_service(partnership: Partnership) -> None:
    """A police case system reading the audit log is refused with PERMISSION_DENIED, and that is audited."""
    stub = audit_stub(partnership, "police", "case-system")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetEntry(audit_pb.GetEntryRequest(index=0), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "ROLE_NOT_BOUND"
    assert await _refusals(partnership) == [
        ("spiffe://mash.local/agency/police/system/case-system", "PERMISSION_DENIED", "GetEntry")]


async def test_a_certificate_bound_to_several_roles_reads_the_log_only_for_a_caller_asserting_auditor(
        partnership: Partnership) -> None:
    """The web console's certificate is bound to auditor among other roles: a person acting in another role (or
    asserting none) through it is refused, audited; only a caller asserting auditor reads the log, and the read
    is recorded with that role."""
    stub = audit_stub(partnership, "hub", "console")
    for metadata in ((("x-mash-user", "manager.1"), ("x-mash-role", "mash_manager")),
                     (("x-mash-user", "manager.1"),)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetEntry(audit_pb.GetEntryRequest(index=0), metadata=metadata, timeout=10)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(caught.value) == "ROLE_NOT_ASSERTED"
    console = "spiffe://mash.local/agency/hub/system/console"
    assert await _refusals(partnership) == [(console, "PERMISSION_DENIED", "GetEntry")] * 2
    await stub.GetEntry(audit_pb.GetEntryRequest(index=0), timeout=10,
                        metadata=(("x-mash-user", "auditor.1"), ("x-mash-role", "auditor")))
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 1000)
    reads = [e for e in (decode_entry(r.data).event for r in rows) if e.kind is AuditKind.AUDIT_ACCESS]
    assert [(e.caller, e.user, e.role) for e in reads] == [(console, "auditor.1", "auditor")]


async def test_an_entry_index_beyond_any_log_is_not_found(partnership: Partnership) -> None:
    """Huge indexes (up to 2**64 - 1) are answered NOT_FOUND or INVALID_ARGUMENT, never INTERNAL."""
    stub = audit_stub(partnership)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetEntry(audit_pb.GetEntryRequest(index=2**64 - 1), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    listed = [m async for m in stub.ListEntries(audit_pb.ListEntriesRequest(start_index=2**64 - 1), timeout=10)]
    assert listed == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetInclusionProof(audit_pb.GetInclusionProofRequest(index=2**64 - 1), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_missing_entry_is_not_found(partnership: Partnership) -> None:
    """Asking for an entry past the end of the log is NOT_FOUND."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await audit_stub(partnership).GetEntry(audit_pb.GetEntryRequest(index=10_000), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_explain_names_the_deciding_policy_lines(partnership: Partnership) -> None:
    """PolicyService explains a decision with the file:line that decided it."""
    stub = policy_stub(partnership, "csc", "case-system")
    reply = await stub.ExplainDecision(policy_pb.ExplainDecisionRequest(
        role="social_worker", purpose="s47_enquiry", agency="health", category="health.attendance"), timeout=10)
    assert reply.level == common_pb2.DISCLOSURE_LEVEL_PERTINENT
    assert reply.allowed_by
    assert all(".csv:" in rule for rule in reply.allowed_by)
    assert any(r.deciding for r in reply.matching_rules)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ExplainDecision(policy_pb.ExplainDecisionRequest(
            role="wizard", purpose="s47_enquiry", agency="health", category="health.attendance"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # another agency's category would be a vacuous NONE
        await stub.ExplainDecision(policy_pb.ExplainDecisionRequest(
            role="social_worker", purpose="s47_enquiry", agency="police", category="health.attendance"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_explain_lists_the_review_lines_that_match(partnership: Partnership) -> None:
    """A cell released only after the owning agency's review says so: its review line is among matching_rules."""
    reply = await policy_stub(partnership, "csc", "case-system").ExplainDecision(policy_pb.ExplainDecisionRequest(
        role="mash_researcher_police", purpose="safeguarding_screening", agency="health",
        category="health.mental_health"), timeout=10)
    reviews = [r for r in reply.matching_rules if r.effect == policy_pb.POLICY_EFFECT_REVIEW]
    assert reviews, "the shipped policy puts health.mental_health under health's review for MASH researchers"
    assert all(r.agency == "health" and ".csv:" in r.location for r in reviews)


async def test_only_policy_admins_may_reload(partnership: Partnership) -> None:
    """ReloadPolicy is refused for a certificate not bound to policy_admin, and the refusal is audited."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await policy_stub(partnership, "police", "case-system").ReloadPolicy(policy_pb.ReloadPolicyRequest(),
                                                                              timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert [rpc for _, _, rpc in await _refusals(partnership)] == ["ReloadPolicy"]


async def test_a_broken_policy_is_refused_on_reload_and_the_last_good_one_keeps_serving(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """A syntax error is refused (audited), queries keep working on the old version; a fix then activates."""
    live = tmp_path / "policies"
    shutil.copytree(policy_dir, live)
    async with Partnership(tmp_path / "state", live, world=shared_world) as partnership:
        admin = policy_stub(partnership)
        before = (await admin.GetPolicyVersion(policy_pb.GetPolicyVersionRequest(), timeout=10)).policy_version
        police = live / "agencies" / "police.csv"
        good = police.read_text()
        police.write_text(good + "p, role:police_officer, agency:police, cat:police, purpose:safeguarding, FULLY\n")
        refused = await admin.ReloadPolicy(policy_pb.ReloadPolicyRequest(), metadata=ADMIN, timeout=30)
        assert not refused.activated
        assert refused.policy_version == before
        assert any(f.file.endswith("police.csv") and f.line > 0 for f in refused.findings)

        client = partnership.client("police", "case-system", user="r.1", role="mash_researcher_police")
        response = await client.query(subject=subject(), **SCREENING)
        assert response.policy_version == before

        police.write_text(good + "# reviewed by the police IG officer\n")
        activated = await admin.ReloadPolicy(policy_pb.ReloadPolicyRequest(), metadata=ADMIN, timeout=30)
        assert activated.activated
        assert activated.policy_version != before
        response = await client.query(subject=subject(), **SCREENING)
        assert response.policy_version == activated.policy_version

        entries = [m.entry async for m in audit_stub(partnership).ListEntries(audit_pb.ListEntriesRequest(),
                                                                              timeout=10)]
        kinds = [e.kind for e in entries]
        assert audit_pb.AUDIT_ENTRY_KIND_POLICY_REJECTED in kinds
        assert kinds.count(audit_pb.AUDIT_ENTRY_KIND_POLICY_ACTIVATION) == 2
        rejected = next(e for e in entries if e.kind == audit_pb.AUDIT_ENTRY_KIND_POLICY_REJECTED)
        assert rejected.user == "ig.officer.1"


REFUSAL_BYTES = 1024  # far above a refusal entry's real size, far below the requests sent below


async def _entries(partnership: Partnership, kind: AuditKind) -> list[tuple[AuditEvent, int]]:
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 100_000)
    decoded = [(decode_entry(r.data).event, len(r.data)) for r in rows]
    return [(event, size) for event, size in decoded if event.kind is kind]


async def test_auditor_filter_text_is_kept_as_keyed_tokens_not_as_typed(partnership: Partnership) -> None:
    """A name typed into the user or case-reference filter is stored only as a keyed token; names stay."""
    stub = audit_stub(partnership)
    typed = {"user": "Kai Mercer 2014", "case_reference": "kai-mercer-dob-2014-03-02"}
    for _ in range(2):
        request = audit_pb.ListEntriesRequest(agency="POLICE", purpose="Safeguarding_Screening", status="match",
                                              **typed)
        [m async for m in stub.ListEntries(request, timeout=10)]
    assert partnership.gateway is not None
    rows = await partnership.gateway.deps.audit.store.scan(0, 1000)
    assert not any(b"Kai Mercer" in r.data or b"kai-mercer" in r.data for r in rows)
    first, second = [event.details for event, _ in await _entries(partnership, AuditKind.AUDIT_ACCESS)]
    assert first == second  # the same search leaves the same tokens, so it can be found again
    # Names are matched case-insensitively and kept as declared.
    assert (first["agency"], first["purpose"], first["status"]) == ("police", "safeguarding_screening", "MATCH")
    for name in ("user", "case_reference"):
        label, key_id, digest = first[name].split(":")
        assert (label, key_id, len(digest)) == (name, "k1", 64)


async def test_too_many_or_malformed_subject_tokens_are_refused_with_a_small_entry(partnership: Partnership) -> None:
    """A subject-token filter is bounded: thousands of tokens, or text that is no token, is INVALID_ARGUMENT."""
    stub = audit_stub(partnership)
    token = "nhs:k1:" + "0" * 64
    for tokens, message in (([f"nhs:k1:{i:064x}" for i in range(5000)], "at most 64 tokens"),
                            (["Kai Mercer"], "each must be a subject token as the log shows it")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            [m async for m in stub.ListEntries(audit_pb.ListEntriesRequest(subject_tokens=tokens), timeout=10)]
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(caught.value) == {"subject_tokens": message}
    assert await _entries(partnership, AuditKind.AUDIT_ACCESS) == []
    refusals = await _entries(partnership, AuditKind.REFUSAL)
    assert [(e.details["rpc"], e.reason) for e, _ in refusals] == [
        ("ListEntries", "invalid request: subject_tokens")] * 2
    assert all(size < REFUSAL_BYTES for _, size in refusals)
    for _ in range(2):
        listed = [m.entry async for m in stub.ListEntries(audit_pb.ListEntriesRequest(subject_tokens=[token]),
                                                          timeout=10)]
    # The second search finds the first (which recorded the token searched for), not itself.
    assert [(e.kind, e.details["rpc"]) for e in listed] == [(audit_pb.AUDIT_ENTRY_KIND_AUDIT_ACCESS, "ListEntries")]


async def test_consistency_proof_errors_name_the_request_fields(partnership: Partnership) -> None:
    """A bad consistency-proof request names first_tree_size / second_tree_size, the fields on the wire."""
    stub = audit_stub(partnership)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetConsistencyProof(audit_pb.GetConsistencyProofRequest(first_tree_size=0), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(caught.value)
    assert list(violations) == ["first_tree_size"]
    assert "size1" not in violations["first_tree_size"]
    assert "second_tree_size" in violations["first_tree_size"]


async def test_large_refused_requests_leave_small_audit_entries(partnership: Partnership) -> None:
    """Refusals on the audit and policy services are audited, each entry small whatever was sent."""
    huge = "x" * 1_000_000
    explain = policy_stub(partnership, "csc", "case-system")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await explain.ExplainDecision(policy_pb.ExplainDecisionRequest(
            role=huge, purpose=huge, agency="health", category=huge), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    outsider = audit_stub(partnership, "police", "case-system")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [m async for m in outsider.ListEntries(audit_pb.ListEntriesRequest(user=huge, case_reference=huge),
                                               metadata=(("x-mash-user", huge[:4000]),), timeout=10)]
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    auditor = audit_stub(partnership)
    backwards = audit_pb.ListEntriesRequest(user=huge, case_reference=huge)
    backwards.since.FromSeconds(2_000_000_000)
    backwards.until.FromSeconds(1_000_000_000)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        [m async for m in auditor.ListEntries(backwards, timeout=10)]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    refusals = await _entries(partnership, AuditKind.REFUSAL)
    assert [(e.details["rpc"], e.status, e.reason) for e, _ in refusals] == [
        ("ExplainDecision", "INVALID_ARGUMENT", "invalid request: role, purpose, category"),
        ("ListEntries", "PERMISSION_DENIED", "ROLE_NOT_BOUND: the certificate is not bound to the auditor role"),
        ("ListEntries", "INVALID_ARGUMENT", "invalid request: until"),
    ]
    assert refusals[1][0].user == "<invalid>"
    assert all(size < REFUSAL_BYTES for _, size in refusals)
    assert await _entries(partnership, AuditKind.AUDIT_ACCESS) == []


async def test_export_streams_a_verifiable_bundle_in_chunks_while_other_calls_are_answered(
    partnership: Partnership, tmp_path: Path
) -> None:
    """Export sends the tar in chunks of at most 64 KiB; mid-stream the gateway still answers other calls."""
    assert partnership.gateway is not None
    audit = partnership.gateway.deps.audit
    note = "n" * 2000
    for batch in range(10):
        await audit.append([AuditEvent(kind=AuditKind.REFUSAL, occurred_at=datetime.now(UTC),
                                       request_id=f"req-{batch}-{i}", reason=note) for i in range(100)])
    stub = audit_stub(partnership)
    stream = stub.Export(audit_pb.ExportRequest(), timeout=30)
    chunks = [(await stream.read()).chunk]
    latest = await stub.GetLatestCheckpoint(audit_pb.GetLatestCheckpointRequest(), timeout=10)
    while (message := await stream.read()) is not grpc.aio.EOF:
        chunks.append(message.chunk)
    assert len(chunks) > 10
    assert all(len(c) <= 64 * 1024 for c in chunks)
    bundle = tmp_path / "export.tar"
    bundle.write_bytes(b"".join(chunks))
    report = verify_export(bundle)
    assert report.ok, report.summary()
    assert report.entries == latest.checkpoint.tree_size > 1000
    (export,) = [e for e, _ in await _entries(partnership, AuditKind.AUDIT_ACCESS) if e.details["rpc"] == "Export"]
    assert export.caller == "spiffe://mash.local/agency/hub/system/audit-console"


async def test_export_memory_does_not_grow_with_the_log(partnership: Partnership) -> None:
    """Streaming an export holds a page of entries at a time, so peak memory stays far below the bundle's size."""
    assert partnership.gateway is not None
    audit = partnership.gateway.deps.audit
    note = "n" * 4000
    for batch in range(8):
        await audit.append([AuditEvent(kind=AuditKind.REFUSAL, occurred_at=datetime.now(UTC),
                                       request_id=f"req-{batch}-{i}", reason=note) for i in range(500)])
    stub = audit_stub(partnership)
    received = 0
    tracemalloc.start()
    try:
        async for message in stub.Export(audit_pb.ExportRequest(), timeout=60):
            received += len(message.chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received > 16_000_000
    assert peak < received / 3, peak


async def test_policy_version_lists_agreements_expiring_within_sixty_days(
    tmp_path: Path, policy_dir: Path, shared_world: World
) -> None:
    """GetPolicyVersion names each agreement ending within 60 days with its last day, for monitoring."""
    from gateway.testing import FixedClock

    clock = FixedClock(datetime(2027, 11, 15, 9, 0, tzinfo=UTC))
    async with Partnership(tmp_path / "state", policy_dir, world=shared_world, clock=clock) as partnership:
        response = await policy_stub(partnership).GetPolicyVersion(policy_pb.GetPolicyVersionRequest(), timeout=10)
    assert [(e.agreement, e.valid_until, e.days_left) for e in response.expiring_agreements] == [
        ("adult-safeguarding-isa-2026", "2027-12-31", 46),
        ("early-help-isa-2026", "2027-12-31", 46),
        ("housing-partnership-2026", "2027-12-31", 46),
        ("mash-analysis-isa-2026", "2027-12-31", 46),
        ("mash-isa-2026", "2027-12-31", 46),
    ]
