"""The `audit` CLI commands, called in-process against a SQLite store in a temporary state directory."""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.audit.backends import open_store
from gateway.audit.checkpoint import generate_signing_key, key_fingerprint, load_signer
from gateway.audit.log import AuditLog
from gateway.cli.audit_cmd import register
from gateway.domain import AuditEvent, SubjectIdentifiers
from gateway.keyring import Keyring, save_keyring
from gateway.testing import FixedClock

EventFactory = Callable[..., AuditEvent]
CHILD = SubjectIdentifiers(nhs_number="9434765919", given_name="Amelia", family_name="Price",
                           date_of_birth="2015-03-02")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="mash-gateway")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", *argv])
    code = args.func(args)
    return code, capsys.readouterr().out


@pytest.fixture
def state(tmp_path: Path, event: EventFactory) -> Path:
    """A state directory with keys and a SQLite log of 10 entries and one checkpoint."""
    from gateway.linkage import SubjectTokeniser

    keys = tmp_path / "keys"
    generate_signing_key(keys / "checkpoint", "cp1")
    ring = Keyring.generate("t1")
    save_keyring(ring, keys / "subject-token.json")
    child_tokens = SubjectTokeniser(ring).tokens(CHILD)

    async def fill() -> None:
        store = await open_store(f"sqlite:///{tmp_path / 'audit.sqlite'}")
        log = await AuditLog.open(store, load_signer(keys / "checkpoint"), FixedClock(), checkpoint_interval=None)
        await log.append([event(i, subject_tokens=child_tokens if i in (2, 5) else ()) for i in range(10)])
        await log.checkpoint()
        await store.close()

    asyncio.run(fill())
    return tmp_path


def test_list_prints_a_table_of_entries(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit list` shows the entries in a table and says how many match."""
    code, out = _run(capsys, "list", "--state-dir", str(state))
    assert code == 0
    assert "10 matching entries; showing 10 (newest first)" in out
    assert "police" in out


def test_list_json_filters_by_agency(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit list --json --agency health` prints one JSON object per matching entry, newest first."""
    code, out = _run(capsys, "list", "--state-dir", str(state), "--agency", "health", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["index"] for r in rows] == [7, 4, 1]
    assert all(r["event"]["agency"] == "health" for r in rows)


def test_show_prints_one_entry(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit show 3 --json` gives the entry, its leaf hash and canonical bytes."""
    code, out = _run(capsys, "show", "3", "--state-dir", str(state), "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["index"] == 3
    assert doc["event"]["request_id"] == "req-3"
    assert json.loads(doc["canonical_entry"])["index"] == 3


def test_show_missing_entry_exits_2(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Asking for an entry that does not exist is a usage error."""
    code, _ = _run(capsys, "show", "99", "--state-dir", str(state))
    assert code == 2


def test_verify_passes_on_an_untouched_log(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit verify` exits 0 and says OK for an intact log."""
    code, out = _run(capsys, "verify", "--state-dir", str(state))
    assert code == 0
    assert "OK: 10 entries" in out


def test_verify_names_the_first_changed_entry(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Changing one byte of one stored entry makes `audit verify` exit 1 and name that entry."""
    with sqlite3.connect(state / "audit.sqlite") as conn:
        conn.execute("UPDATE audit_entries SET data = replace(data, 'req-6', 'req-9') WHERE idx = 6")
    code, out = _run(capsys, "verify", "--state-dir", str(state))
    assert code == 1
    assert "first bad entry 6" in out
    code, out = _run(capsys, "verify", "--state-dir", str(state), "--json")
    assert json.loads(out)["first_bad_entry"] == 6


def _extend(state: Path, event: EventFactory, start: int, stop: int) -> None:
    """Append entries start..stop-1 to the state's log and checkpoint it (as the gateway would)."""
    async def fill() -> None:
        store = await open_store(f"sqlite:///{state / 'audit.sqlite'}")
        clock = FixedClock()
        clock.advance(3600)
        log = await AuditLog.open(store, load_signer(state / "keys" / "checkpoint"), clock,
                                  checkpoint_interval=None)
        await log.append([event(i) for i in range(start, stop)])
        await log.checkpoint()
        await store.close()

    asyncio.run(fill())


def test_prove_inclusion_and_consistency(state: Path, event: EventFactory,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`audit prove` verifies an inclusion proof and a consistency proof against signed checkpoints."""
    code, out = _run(capsys, "prove", "4", "--state-dir", str(state), "--json")
    doc = json.loads(out)
    assert code == 0
    assert doc["verified"] is True
    assert doc["checkpoint"]["tree_size"] == 10
    _extend(state, event, 10, 15)
    code, out = _run(capsys, "prove", "--consistency", "10", "--state-dir", str(state), "--json")
    doc = json.loads(out)
    assert code == 0
    assert (doc["verified"], doc["size2"], doc["checkpoint2"]["tree_size"]) == (True, 15, 15)


def test_prove_consistency_from_an_unsigned_size_is_not_verified(state: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A consistency proof from a size no checkpoint signed proves nothing: exit 1, and the reason says so."""
    code, out = _run(capsys, "prove", "--consistency", "3", "10", "--state-dir", str(state), "--json")
    doc = json.loads(out)
    assert code == 1
    assert doc["verified"] is False
    assert "no signed checkpoint at tree size 3" in doc["reason"]


@pytest.mark.parametrize("rewrite_leaf", [True, False])
def test_prove_does_not_verify_an_entry_rewritten_in_the_database(
        state: Path, capsys: pytest.CaptureFixture[str], rewrite_leaf: bool) -> None:
    """An entry rewritten under a signed checkpoint (with or without its leaf hash) is never 'verified'."""
    from gateway.audit.merkle import leaf_hash

    with sqlite3.connect(state / "audit.sqlite") as conn:
        (data,) = conn.execute("SELECT data FROM audit_entries WHERE idx = 3").fetchone()
        forged = bytes(data).replace(b"user-0", b"user-X")
        conn.execute("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE idx = 3",
                     (forged if rewrite_leaf else data, leaf_hash(forged) if rewrite_leaf else b"\x11" * 32))
    code, out = _run(capsys, "prove", "3", "--state-dir", str(state), "--json")
    doc = json.loads(out)
    assert code == 1
    assert doc["verified"] is False


def test_prove_needs_an_index_or_consistency(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit prove` with neither an index nor --consistency is a usage error."""
    code, _ = _run(capsys, "prove", "--state-dir", str(state))
    assert code == 2


def test_checkpoint_command_signs_a_new_checkpoint(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit checkpoint` stores a new signed checkpoint for the current size."""
    code, out = _run(capsys, "checkpoint", "--state-dir", str(state), "--json")
    assert code == 0
    assert json.loads(out)["tree_size"] == 10
    code, out = _run(capsys, "verify", "--state-dir", str(state), "--json")
    assert json.loads(out)["checkpoints"] == 2


def test_subject_access_from_identifiers(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit subject-access` with a person's identifiers lists the entries carrying their tokens."""
    code, out = _run(capsys, "subject-access", "--state-dir", str(state), "--nhs-number", "943 476 5919",
                     "--json")
    assert code == 0
    assert [json.loads(line)["index"] for line in out.splitlines()] == [2, 5]


def test_subject_access_without_identifiers_exits_2(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Subject access with nothing to search for is a usage error."""
    code, _ = _run(capsys, "subject-access", "--state-dir", str(state))
    assert code == 2


def test_export_then_verify_export(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit export` writes a bundle that `audit verify-export` accepts, with or without trusted keys."""
    bundle = tmp_path / "out.tar"
    code, _ = _run(capsys, "export", str(bundle), "--state-dir", str(state))
    assert code == 0
    code, out = _run(capsys, "verify-export", str(bundle))
    assert code == 0
    assert "fingerprints" in out
    code, _ = _run(capsys, "verify-export", str(bundle), "--keys", str(state / "keys" / "checkpoint"))
    assert code == 0


def test_verify_export_json_names_the_keys_and_whether_they_were_trusted(
        state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """verify-export --json gives the fingerprints of the keys used and says if they came from --keys."""
    bundle = tmp_path / "out"
    _run(capsys, "export", str(bundle), "--state-dir", str(state))
    fingerprint = key_fingerprint(load_signer(state / "keys" / "checkpoint").public_key)
    for extra, trusted in (((), False), (("--keys", str(state / "keys" / "checkpoint")), True)):
        code, out = _run(capsys, "verify-export", str(bundle), "--json", *extra)
        doc = json.loads(out)
        assert code == 0
        assert (doc["keys_trusted"], doc["key_fingerprints"]) == (trusted, {"cp1": fingerprint})


def test_verify_counts_entries_after_the_last_checkpoint_as_not_verified(
        state: Path, event: EventFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """Entries appended after the newest checkpoint make `audit verify` exit 3 and count them, without a problem."""
    async def more() -> None:
        store = await open_store(f"sqlite:///{state / 'audit.sqlite'}")
        log = await AuditLog.open(store, None, FixedClock(), checkpoint_interval=None)
        await log.append([event(10), event(11)])
        await store.close()

    asyncio.run(more())
    code, out = _run(capsys, "verify", "--state-dir", str(state), "--json")
    doc = json.loads(out)
    assert code == 3
    assert (doc["ok"], doc["uncovered"], doc["problems"]) == (True, 2, [])


def test_verify_export_of_a_damaged_bundle_exits_1(state: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A bundle whose files were changed fails verify-export with exit code 1."""
    bundle = tmp_path / "out"
    _run(capsys, "export", str(bundle), "--state-dir", str(state))
    (bundle / "entries.txt").write_bytes((bundle / "entries.txt").read_bytes()[:-10])
    code, _ = _run(capsys, "verify-export", str(bundle))
    assert code == 1


def test_missing_store_or_location_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No store named, or a store file that does not exist, is exit code 2."""
    assert _run(capsys, "list")[0] == 2
    assert _run(capsys, "list", "--store", f"sqlite:///{tmp_path / 'nope.sqlite'}")[0] == 2
    assert not (tmp_path / "nope.sqlite").exists()
    assert _run(capsys, "verify", "--store", "mysql://x")[0] == 2


def test_verify_without_keys_exits_2(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Verification needs the checkpoint public keys; a missing key directory is exit code 2."""
    code, _ = _run(capsys, "verify", "--store", f"sqlite:///{state / 'audit.sqlite'}", "--keys",
                   str(tmp_path / "none"))
    assert code == 2


def _sql(state: Path, statement: str, params: tuple[object, ...] = ()) -> None:
    with sqlite3.connect(state / "audit.sqlite") as conn:
        conn.execute(statement, params)


@pytest.mark.parametrize("damage", [
    "DELETE FROM audit_entries WHERE idx = 3",
    "UPDATE audit_entries SET leaf_hash = X'00' WHERE idx = 3",
])
def test_verify_reports_a_deleted_or_mangled_entry_instead_of_crashing(
        state: Path, capsys: pytest.CaptureFixture[str], damage: str) -> None:
    """A gap or a leaf hash of the wrong length is reported by `audit verify` (exit 1), naming entry 3."""
    _sql(state, damage)
    code, out = _run(capsys, "verify", "--state-dir", str(state), "--json")
    assert code == 1
    assert json.loads(out)["first_bad_entry"] == 3


def test_export_of_a_log_with_a_gap_still_works_and_the_bundle_names_it(
        state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exporting a damaged log succeeds, so the damage can be shown to others; verify-export names it."""
    _sql(state, "DELETE FROM audit_entries WHERE idx = 3")
    code, _ = _run(capsys, "export", str(tmp_path / "bundle"), "--state-dir", str(state))
    assert code == 0
    code, out = _run(capsys, "verify-export", str(tmp_path / "bundle"), "--json")
    assert code == 1
    assert json.loads(out)["first_bad_entry"] == 3


@pytest.mark.parametrize("tree_size", [-1, "ten"])
def test_verify_reports_a_checkpoint_with_an_impossible_tree_size(
        state: Path, capsys: pytest.CaptureFixture[str], tree_size: object) -> None:
    """A stored checkpoint whose tree size is negative or not a number is a problem verify reports (exit 1)."""
    _sql(state, "UPDATE audit_checkpoints SET tree_size = ?", (tree_size,))
    code, out = _run(capsys, "verify", "--state-dir", str(state), "--json")
    doc = json.loads(out)
    assert code == 1
    assert doc["ok"] is False
    assert any(p["kind"] == "malformed" and "checkpoint" in p["message"] for p in doc["problems"])


def test_checkpoint_command_refuses_to_sign_a_rewritten_log(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit checkpoint` on a log rewritten with matching leaf hashes fails and stores no new checkpoint."""
    from gateway.audit.merkle import leaf_hash

    with sqlite3.connect(state / "audit.sqlite") as conn:
        (data,) = conn.execute("SELECT data FROM audit_entries WHERE idx = 3").fetchone()
        forged = bytes(data).replace(b"user-0", b"user-X")
        conn.execute("UPDATE audit_entries SET data = ?, leaf_hash = ? WHERE idx = 3", (forged, leaf_hash(forged)))
    code, _ = _run(capsys, "checkpoint", "--state-dir", str(state))
    assert code == 2
    with sqlite3.connect(state / "audit.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone() == (1,)


def test_a_kept_checkpoint_exposes_entries_deleted_with_the_checkpoints_after_them(
        state: Path, event: EventFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Deleting the newest entries together with the checkpoints covering them passes plain verification, but
    not --trusted-checkpoint with a checkpoint the auditor kept (for verify and verify-export alike)."""
    _extend(state, event, 10, 15)
    kept = tmp_path / "kept.json"
    kept.write_text(json.dumps(json.loads(_run(capsys, "prove", "12", "--state-dir", str(state), "--json")[1])
                               ["checkpoint"]))
    _sql(state, "DELETE FROM audit_entries WHERE idx >= 10")
    _sql(state, "DELETE FROM audit_subject_tokens WHERE idx >= 10")
    _sql(state, "DELETE FROM audit_checkpoints WHERE tree_size = 15")
    assert _run(capsys, "verify", "--state-dir", str(state))[0] == 0
    code, out = _run(capsys, "verify", "--state-dir", str(state), "--trusted-checkpoint", str(kept), "--json")
    assert code == 1
    assert [p["kind"] for p in json.loads(out)["problems"]] == ["truncated"]
    _run(capsys, "export", str(tmp_path / "bundle"), "--state-dir", str(state))
    code, _ = _run(capsys, "verify-export", str(tmp_path / "bundle"), "--trusted-checkpoint", str(kept))
    assert code == 1


def test_an_unreadable_trusted_checkpoint_is_a_usage_error(state: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A --trusted-checkpoint file that is not a checkpoint exits 2."""
    (tmp_path / "cp.json").write_text("{}")
    assert _run(capsys, "verify", "--state-dir", str(state), "--trusted-checkpoint", str(tmp_path / "cp.json"))[0] == 2


# Values that rich would read as markup ([style]…[/], [link=…]) or emoji codes (:name:) if printed unescaped.
_USER = "[bold]u1[/bold]"
_ROLE = ":warning:"
_REASON = "[link=https://example.org]see[/link]"
_NOTE = "[i]x[/i] :baby:"


@pytest.fixture
def bracketed_state(tmp_path: Path, event: EventFactory) -> Path:
    """A state directory whose one entry holds markup-like text in several fields, plus a checkpoint."""
    keys = tmp_path / "keys"
    generate_signing_key(keys / "checkpoint", "cp1")

    async def fill() -> None:
        store = await open_store(f"sqlite:///{tmp_path / 'audit.sqlite'}")
        log = await AuditLog.open(store, load_signer(keys / "checkpoint"), FixedClock(), checkpoint_interval=None)
        await log.append([event(0, user=_USER, role=_ROLE, reason=_REASON, details={"note": _NOTE})])
        await log.checkpoint()
        await store.close()

    asyncio.run(fill())
    return tmp_path


def test_show_prints_manifest_categories_and_markup_like_values_literally(
        bracketed_state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit show` keeps every manifest field's [category] and prints bracket and emoji text as stored."""
    code, out = _run(capsys, "show", "0", "--state-dir", str(bracketed_state))
    assert code == 0
    assert "r1 address [person.address] REDACTED postcode_district pertinent" in out
    for value in (_USER, _ROLE, _REASON, f"note={_NOTE}"):
        assert value in out


def test_list_table_prints_markup_like_values_literally(bracketed_state: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`audit list` prints bracket and emoji text in table cells as stored."""
    code, out = _run(capsys, "list", "--state-dir", str(bracketed_state))
    assert code == 0
    assert _USER in out
    assert _ROLE in out


def test_messages_print_markup_like_paths_literally(bracketed_state: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Paths in export summaries and in error messages are printed as given, brackets included."""
    dest = tmp_path / "[bold]bundle"
    code, out = _run(capsys, "export", str(dest), "--state-dir", str(bracketed_state))
    assert code == 0
    assert f"to {dest};" in out
    kept = tmp_path / "[red]kept.json"
    kept.write_text("{}")
    parser = argparse.ArgumentParser(prog="mash-gateway")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", "verify", "--state-dir", str(bracketed_state), "--trusted-checkpoint",
                              str(kept)])
    assert args.func(args) == 2
    assert f"--trusted-checkpoint {kept}:" in capsys.readouterr().err
