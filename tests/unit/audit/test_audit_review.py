"""Auditor use cases: listing with filters, proofs, subject access, export and offline verification."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.audit.checkpoint import CheckpointSigner, PublicKeys
from gateway.audit.encoding import encode_event, entry_bytes
from gateway.audit.log import AuditLog
from gateway.audit.memory_store import MemoryStore
from gateway.audit.merkle import MerkleTree, ProofError, leaf_hash, verify_consistency, verify_inclusion
from gateway.audit.review import AuditReview, read_chunks, verify_export
from gateway.audit.sealing import IdentifierSealer
from gateway.audit.store import EntryFilter, StoredEntry
from gateway.domain import AuditEvent, AuditKind, SubjectIdentifiers
from gateway.errors import InvalidRequest, NotFound
from gateway.keyring import Keyring
from gateway.testing import FixedClock

EventFactory = Callable[..., AuditEvent]
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


async def _review(event: EventFactory, n: int = 12) -> tuple[AuditReview, AuditLog, MemoryStore]:
    store = MemoryStore()
    signer = CheckpointSigner.generate("cp1")
    log = await AuditLog.open(store, signer, FixedClock(), checkpoint_interval=None)
    if n:
        await log.append([event(i) for i in range(n)])
        await log.checkpoint()
    return AuditReview(log, PublicKeys({"cp1": signer.public_key})), log, store


async def _indices(review: AuditReview, where: EntryFilter, **kw: int) -> list[int]:
    return [r.index async for r in review.list_entries(where, **kw)]


@pytest.mark.parametrize(("where", "expected"), [
    (EntryFilter(), list(range(12))),
    (EntryFilter(agency="health"), [1, 4, 7, 10]),
    (EntryFilter(case_reference="CASE-2"), [2, 6, 10]),
    (EntryFilter(user="user-0", agency="police"), [0, 3, 6, 9]),
    (EntryFilter(since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=6)), [3, 4, 5]),
    (EntryFilter(subject_tokens=frozenset({f"nhs:k1:{1:064x}"})), [1, 6, 11]),
    (EntryFilter(purpose="early_help"), []),
    (EntryFilter(kind="refusal"), []),
])
async def test_list_applies_every_filter(event: EventFactory, where: EntryFilter, expected: list[int]) -> None:
    """Listing returns exactly the entries matching all given criteria, in index order."""
    review, _, _ = await _review(event)
    assert await _indices(review, where) == expected


async def test_list_pages_through_large_logs_and_honours_limit(event: EventFactory) -> None:
    """More entries than one page are all returned; a limit cuts the listing short."""
    review, _, _ = await _review(event, n=1203)
    assert len(await _indices(review, EntryFilter())) == 1203
    assert await _indices(review, EntryFilter(), limit=3) == [0, 1, 2]
    assert await _indices(review, EntryFilter(agency="csc"), limit=2, start=100) == [101, 104]


async def test_list_rejects_an_empty_time_range(event: EventFactory) -> None:
    """`until` not after `since` is an invalid request, not an empty answer."""
    review, _, _ = await _review(event, n=0)
    with pytest.raises(InvalidRequest, match="until"):
        await _indices(review, EntryFilter(since=T0, until=T0))


async def test_get_entry_returns_the_decoded_event_and_missing_one_is_not_found(event: EventFactory) -> None:
    """An entry comes back exactly as appended; an index past the end is NotFound."""
    review, _, _ = await _review(event)
    record = await review.get_entry(5)
    assert record.event == event(5)
    with pytest.raises(NotFound):
        await review.get_entry(12)


async def test_latest_checkpoint_of_an_unchecked_log_is_not_found(event: EventFactory) -> None:
    """Before any checkpoint there is nothing to return."""
    review, _, _ = await _review(event, n=0)
    with pytest.raises(NotFound):
        await review.latest_checkpoint()


async def test_inclusion_proof_defaults_to_the_latest_signed_checkpoint(event: EventFactory) -> None:
    """Without a tree size the proof is against the latest checkpoint covering the entry, which it carries."""
    review, log, _ = await _review(event)
    await log.append([event(99)])  # not yet covered by a checkpoint
    proof = await review.inclusion_proof(4)
    assert proof.tree_size == 12
    assert proof.checkpoint is not None
    assert proof.root_hash == proof.checkpoint.root_hash
    verify_inclusion(4, 12, proof.leaf_hash, proof.path, proof.checkpoint.root_hash)
    uncovered = await review.inclusion_proof(12)
    assert uncovered.tree_size == 13
    assert uncovered.checkpoint is None


async def test_inclusion_proof_of_an_entry_changed_after_loading_does_not_verify(event: EventFactory) -> None:
    """The proof's leaf is hashed from the stored bytes: an entry rewritten under a running log fails to verify."""
    review, _, store = await _review(event)
    (await review.inclusion_proof(4)).verify(review.keys)
    row, meta = store.rows[4]
    forged = row.data.replace(b"req-4", b"req-X")
    store.rows[4] = (StoredEntry(4, leaf_hash(forged), forged), meta)
    proof = await review.inclusion_proof(4)
    with pytest.raises(ProofError):
        proof.verify(review.keys)


async def test_proofs_against_unsigned_sizes_or_unknown_keys_do_not_verify(event: EventFactory) -> None:
    """Without a signed checkpoint at the proven size, or with keys that did not sign it, verify refuses."""
    review, log, _ = await _review(event)
    await log.append([event(12)])
    with pytest.raises(ProofError, match="no signed checkpoint"):
        (await review.inclusion_proof(12)).verify(review.keys)
    with pytest.raises(ProofError, match="no signed checkpoint at tree size 5"):
        (await review.consistency_proof(5, 12)).verify(review.keys)
    with pytest.raises(ProofError, match="does not verify"):
        (await review.inclusion_proof(3)).verify(PublicKeys({"cp1": CheckpointSigner.generate().public_key}))


async def test_inclusion_proof_outside_the_tree_is_invalid(event: EventFactory) -> None:
    """An index at or past the tree size is an invalid request."""
    review, _, _ = await _review(event)
    with pytest.raises(InvalidRequest):
        await review.inclusion_proof(12, 12)
    with pytest.raises(InvalidRequest):
        await review.inclusion_proof(0, 50)


async def test_consistency_proof_between_sizes_verifies(event: EventFactory) -> None:
    """A consistency proof from an older size to the current log verifies."""
    review, _, _ = await _review(event)
    proof = await review.consistency_proof(5)
    assert proof.size2 == 12
    verify_consistency(proof.size1, proof.size2, proof.root1, proof.root2, proof.path)
    with pytest.raises(InvalidRequest):
        await review.consistency_proof(0, 5)


async def test_subject_access_finds_every_entry_about_a_person_after_token_key_rotation(
        event: EventFactory) -> None:
    """Entries tokenised under an old and a new token key are all found from the person's identifiers."""
    from gateway.linkage import SubjectTokeniser

    child = SubjectIdentifiers(nhs_number="9434765919", given_name="Amelia", family_name="Price",
                               date_of_birth="2015-03-02")
    other = SubjectIdentifiers(nhs_number="4010232137")
    ring = Keyring.generate("t1")
    old, new = SubjectTokeniser(ring), SubjectTokeniser(ring.rotated("t2"))
    review, log, _ = await _review(event, n=0)
    await log.append([
        event(0, subject_tokens=old.tokens(child)),
        event(1, subject_tokens=old.tokens(other)),
        event(2, subject_tokens=new.tokens(child), kind=AuditKind.REFUSAL),
    ])
    found = [r.index async for r in review.subject_access(new.all_tokens(child))]
    assert found == [0, 2]
    with pytest.raises(InvalidRequest):
        [r async for r in review.subject_access([])]


async def test_stored_entries_hold_no_raw_identifiers(event: EventFactory) -> None:
    """With tokens and sealed identifiers as the service layer writes them, no identifier appears in storage."""
    from gateway.linkage import SubjectTokeniser

    child = SubjectIdentifiers(nhs_number="943 476 5919", given_name="Amelia", family_name="Price",
                               date_of_birth="2015-03-02", postcode="LS6 2AB")
    sealer = IdentifierSealer(Keyring.generate("s1"))
    tokens = SubjectTokeniser(Keyring.generate("t1")).tokens(child)
    review, log, store = await _review(event, n=0)
    await log.append([event(0, subject_tokens=tokens, sealed_identifiers=sealer.seal(child, aad=b"req-0"))])
    stored = b"".join(row.data for row in await store.scan(0, 10)).decode()
    for pattern in (r"9434765919|943 476 5919", r"Amelia|Price", r"2015-03-02", r"LS6 ?2AB"):
        assert not re.search(pattern, stored, re.IGNORECASE), pattern
    record = await review.get_entry(0)
    assert sealer.open(record.event.sealed_identifiers, aad=b"req-0") == child


@pytest.mark.parametrize("name", ["bundle", "bundle.tar"])
async def test_export_verifies_offline(event: EventFactory, tmp_path: Path, name: str) -> None:
    """An exported bundle (directory or tar) verifies without the store, with its own or trusted keys."""
    review, _, _ = await _review(event)
    summary = await review.export(tmp_path / name)
    assert summary.entries == 12
    report = verify_export(tmp_path / name)
    assert report.ok, report.summary()
    assert report.root_hash == summary.root_hash
    assert verify_export(tmp_path / name, trusted_keys=review.keys).ok


async def test_export_tar_streams_in_chunks(event: EventFactory, tmp_path: Path) -> None:
    """read_chunks yields the tar bundle's bytes in order, for a streaming export."""
    review, _, _ = await _review(event)
    await review.export(tmp_path / "b.tar")
    assert b"".join(read_chunks(tmp_path / "b.tar", 100)) == (tmp_path / "b.tar").read_bytes()


async def test_export_refuses_to_overwrite(event: EventFactory, tmp_path: Path) -> None:
    """Exporting onto an existing non-empty destination is refused."""
    review, _, _ = await _review(event)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    with pytest.raises(InvalidRequest):
        await review.export(tmp_path / "b")


async def test_bundle_with_an_edited_entry_fails_and_names_it(event: EventFactory, tmp_path: Path) -> None:
    """Changing an entry inside the bundle (and fixing the manifest digest) is caught at that entry."""
    review, _, _ = await _review(event)
    bundle = tmp_path / "b"
    await review.export(bundle)
    entries = (bundle / "entries.txt").read_bytes().replace(b'"req-7"', b'"req-X"')
    (bundle / "entries.txt").write_bytes(entries)
    manifest = json.loads((bundle / "manifest.json").read_text())
    import hashlib
    manifest["files"]["entries.txt"] = hashlib.sha256(entries).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    report = verify_export(bundle)
    assert not report.ok
    assert report.first_bad_entry == 7


def _reseal(bundle: Path, entries: bytes | None = None, checkpoints: bytes | None = None) -> None:
    """Rewrite a bundle's entries/checkpoints and make its manifest match, as a forger would."""
    import hashlib

    if entries is not None:
        (bundle / "entries.txt").write_bytes(entries)
    if checkpoints is not None:
        (bundle / "checkpoints.jsonl").write_bytes(checkpoints)
    lines = (bundle / "entries.txt").read_bytes().split(b"\n")[:-1]
    tree = MerkleTree(bytes.fromhex(line.split(b"\t")[1].decode()) for line in lines)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(entries=len(lines), root_hash=tree.root().hex())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _forged_line(index: int, event: AuditEvent) -> bytes:
    data = entry_bytes(index, encode_event(event))
    return b"%d\t%s\t" % (index, leaf_hash(data).hex().encode()) + data + b"\n"


async def test_export_leaves_out_entries_no_checkpoint_covers(event: EventFactory, tmp_path: Path) -> None:
    """Without a signing key the bundle ends at the newest checkpoint; later entries are counted as left out."""
    review, log, store = await _review(event)
    await log.append([event(i) for i in range(12, 15)])
    summary = await AuditReview(store, review.keys).export(tmp_path / "b")
    assert (summary.entries, summary.left_out) == (12, 3)
    assert verify_export(tmp_path / "b").ok


async def test_export_from_a_signing_log_checkpoints_first(event: EventFactory, tmp_path: Path) -> None:
    """A review over the gateway's own (signing) log checkpoints before exporting, so nothing is left out."""
    review, log, _ = await _review(event)
    await log.append([event(i) for i in range(12, 15)])
    summary = await review.export(tmp_path / "b")
    assert (summary.entries, summary.left_out) == (15, 0)
    assert verify_export(tmp_path / "b", trusted_keys=review.keys).ok


async def test_export_without_any_checkpoint_is_refused(event: EventFactory, tmp_path: Path) -> None:
    """There is nothing signed to export before the first checkpoint."""
    store = MemoryStore()
    await (await AuditLog.open(store, None, FixedClock(), checkpoint_interval=None)).append([event(0)])
    with pytest.raises(NotFound, match="checkpoint"):
        await AuditReview(store, PublicKeys({})).export(tmp_path / "b")


async def test_bundle_with_entries_appended_after_its_checkpoint_is_not_verified(
        event: EventFactory, tmp_path: Path) -> None:
    """Well-formed entries added to a bundle after its last checkpoint are reported as uncovered."""
    review, _, _ = await _review(event)
    await review.export(tmp_path / "b")
    entries = (tmp_path / "b" / "entries.txt").read_bytes() + _forged_line(12, event(12, user="someone"))
    _reseal(tmp_path / "b", entries=entries)
    report = verify_export(tmp_path / "b", trusted_keys=review.keys)
    assert not report.ok
    assert [p.kind for p in report.problems] == ["uncovered"]


async def test_bundle_with_its_checkpoints_removed_is_not_verified(event: EventFactory, tmp_path: Path) -> None:
    """A bundle whose entries were all forged and whose checkpoints were dropped is not verified."""
    review, _, _ = await _review(event)
    await review.export(tmp_path / "b")
    forged = b"".join(_forged_line(i, event(i, user="someone")) for i in range(12))
    _reseal(tmp_path / "b", entries=forged, checkpoints=b"")
    report = verify_export(tmp_path / "b", trusted_keys=review.keys)
    assert not report.ok
    assert "no signed checkpoint" in report.summary()


async def test_verify_from_a_signing_log_checkpoints_first(event: EventFactory) -> None:
    """The gateway's own review verifies as of a checkpoint made now; a store-only review flags newer entries."""
    review, log, store = await _review(event)
    await log.append([event(i) for i in range(12, 15)])
    assert not (await AuditReview(store, review.keys).verify()).ok
    report = await review.verify()
    assert report.ok, report.summary()
    assert report.entries == 15


async def test_bundle_with_file_not_matching_manifest_fails(event: EventFactory, tmp_path: Path) -> None:
    """A bundle file whose digest differs from the manifest is rejected."""
    review, _, _ = await _review(event)
    bundle = tmp_path / "b"
    await review.export(bundle)
    (bundle / "checkpoints.jsonl").write_text("")
    report = verify_export(bundle)
    assert not report.ok
    assert "checkpoints.jsonl" in report.problems[0].message


async def test_bundle_checked_against_other_trusted_keys_fails(event: EventFactory, tmp_path: Path) -> None:
    """If the bundle's checkpoints are not signed by the trusted keys, verification fails."""
    review, _, _ = await _review(event)
    await review.export(tmp_path / "b.tar")
    other = PublicKeys({"cp1": CheckpointSigner.generate("cp1").public_key})
    report = verify_export(tmp_path / "b.tar", trusted_keys=other)
    assert not report.ok
    assert report.first_bad_checkpoint == 0


def test_unreadable_bundle_is_a_failed_report(tmp_path: Path) -> None:
    """A file that is not a bundle gives a failed report, not an exception."""
    (tmp_path / "x.tar").write_bytes(b"junk")
    assert not verify_export(tmp_path / "x.tar").ok
    with tarfile.open(tmp_path / "e.tar", "w"):
        pass
    assert not verify_export(tmp_path / "e.tar").ok
