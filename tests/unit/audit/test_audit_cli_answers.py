"""The auditors' questions answered by the `audit` CLI against a real SQLite log and the shipped vocabulary."""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.audit.answers import NOT_REQUESTED_REASON
from gateway.audit.backends import open_store
from gateway.audit.checkpoint import generate_signing_key, load_signer
from gateway.audit.encoding import decode_entry
from gateway.audit.log import AuditLog
from gateway.cli.audit_cmd import register
from gateway.domain import AuditEvent, AuditKind, FieldDisclosure, ManifestEntry, SubjectIdentifiers
from gateway.keyring import Keyring, save_keyring
from gateway.linkage import SubjectTokeniser
from gateway.testing import FixedClock

EventFactory = Callable[..., AuditEvent]
POLICIES = Path(__file__).resolve().parents[3] / "policies"
CHILD = SubjectIdentifiers(nhs_number="9434765919", given_name="Amelia", family_name="Price",
                           date_of_birth="2015-03-02")
OCTOBER = datetime(2026, 10, 14, 10, 0, tzinfo=UTC)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="mash-gateway")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", *argv])
    code = args.func(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _entries(state: Path) -> list[AuditEvent]:
    async def read() -> list[AuditEvent]:
        store = await open_store(f"sqlite:///{state / 'audit.sqlite'}")
        try:
            return [decode_entry(row.data).event for row in await store.scan(0, 1000)]
        finally:
            await store.close()
    return asyncio.run(read())


@pytest.fixture
def state(tmp_path: Path, event: EventFactory) -> Path:
    """A log of 12 entries: 10 routine ones, then a health disclosure about the child in October (11) after a
    query that did not ask education about her (10)."""
    keys = tmp_path / "keys"
    generate_signing_key(keys / "checkpoint", "cp1")
    ring = Keyring.generate("t1")
    save_keyring(ring, keys / "subject-token.json")
    child = SubjectTokeniser(ring).tokens(CHILD)
    events = [event(i) for i in range(10)]
    events.append(event(10, occurred_at=OCTOBER, subject_tokens=child, agency="education", status="WITHHELD",
                        level="NONE", categories=(), manifest=(), reason=NOT_REQUESTED_REASON))
    events.append(event(11, occurred_at=OCTOBER, subject_tokens=child, agency="health", user="sw-jones",
                        case_reference="CASE-SECRET-77", categories=("health.attendance",),
                        manifest=(ManifestEntry("REC-SIBLING-9", "address", "person.address",
                                                FieldDisclosure.REDACTED, "postcode_district", "third party"),),
                        caller="spiffe://mash.local/agency/csc/system/case-system"))

    async def fill() -> None:
        store = await open_store(f"sqlite:///{tmp_path / 'audit.sqlite'}")
        log = await AuditLog.open(store, load_signer(keys / "checkpoint"), FixedClock(), checkpoint_interval=None)
        await log.append(events)
        await log.checkpoint()
        await store.close()

    asyncio.run(fill())
    return tmp_path


def test_list_says_how_many_match_and_pages_newest_first(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit list` shows the newest entries first, the total that match, and the option for the next page."""
    code, out, err = _run(capsys, "list", "--state-dir", str(state), "--kind", "disclosure", "--limit", "5",
                          "--json")
    assert code == 0
    assert [json.loads(line)["index"] for line in out.splitlines()] == [11, 10, 9, 8, 7]
    assert "12 matching entries; showing 5 (newest first); next page: --before 7" in err
    code, out, _ = _run(capsys, "list", "--state-dir", str(state), "--kind", "disclosure", "--limit", "5",
                        "--before", "7", "--json")
    assert [json.loads(line)["index"] for line in out.splitlines()] == [6, 5, 4, 3, 2]


def test_list_oldest_first_pages_forwards(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--oldest-first` lists from the start of the log and names `--after` for the next page."""
    code, out, err = _run(capsys, "list", "--state-dir", str(state), "--limit", "3", "--oldest-first",
                          "--after", "2", "--json")
    assert code == 0
    assert [json.loads(line)["index"] for line in out.splitlines()] == [3, 4, 5]
    assert "next page: --after 5" in err


@pytest.mark.parametrize(("option", "value", "hint"), [
    ("--agency", "helth", "did you mean 'health'"),
    ("--status", "withheldd", "did you mean 'WITHHELD'"),
    ("--purpose", "s47-enquiry", "did you mean 's47_enquiry'"),
    ("--kind", "disclosur", "did you mean 'disclosure'"),
])
def test_list_refuses_an_unknown_filter_value_naming_the_closest(
        state: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, hint: str) -> None:
    """A misspelt agency, status, purpose or kind is a usage error naming the closest declared name, not 0 entries."""
    code, out, err = _run(capsys, "list", "--state-dir", str(state), "--policy-dir", str(POLICIES), option, value)
    assert code == 2
    assert hint in err
    assert out == ""


@pytest.mark.parametrize("status", ["resource_exhausted", "FAILED_PRECONDITION", "approved", "purged", "RECEIVED"])
def test_list_accepts_every_status_the_gateway_writes(state: Path, capsys: pytest.CaptureFixture[str],
                                                      status: str) -> None:
    """Refusal codes beyond INVALID_ARGUMENT, review and referral states are statuses too, not "unknown"."""
    code, out, err = _run(capsys, "list", "--state-dir", str(state), "--status", status, "--json")
    assert code == 0, err
    assert out == ""
    assert "0 matching entries" in err


def test_list_filters_are_case_insensitive(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--status withheld --agency EDUCATION` finds the WITHHELD education entry."""
    code, out, err = _run(capsys, "list", "--state-dir", str(state), "--status", "withheld", "--agency", "EDUCATION",
                          "--json")
    assert code == 0
    assert [json.loads(line)["index"] for line in out.splitlines()] == [10]
    assert "1 matching entry" in err


def test_list_table_shows_agreement_legal_basis_categories_and_organisation(
        state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table has the columns an auditor needs to judge a disclosure."""
    code, out, _ = _run(capsys, "list", "--state-dir", str(state), "--agency", "health", "--limit", "1")
    assert code == 0
    for text in ("agreement", "legal basis", "categories", "organisation", "mash-isa-2026", "children_act_1989_s47",
                 "health.attendance", "csc"):
        assert text in out
    assert "1 matching" not in out
    assert "matching entries; showing 1" in out


def test_list_csv_is_a_spreadsheet_that_keeps_formulas_as_text(tmp_path: Path, event: EventFactory,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`--csv` prints a header and one row per entry; a cell that a spreadsheet would run is quoted as text."""
    keys = tmp_path / "keys"
    generate_signing_key(keys / "checkpoint", "cp1")

    async def fill() -> None:
        store = await open_store(f"sqlite:///{tmp_path / 'audit.sqlite'}")
        log = await AuditLog.open(store, load_signer(keys / "checkpoint"), FixedClock(), checkpoint_interval=None)
        await log.append([event(0, case_reference="=HYPERLINK(\"x\")"), event(1)])
        await store.close()
    asyncio.run(fill())
    code, out, _ = _run(capsys, "list", "--state-dir", str(tmp_path), "--kind", "disclosure", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert [r["index"] for r in rows] == ["1", "0"]
    assert rows[1]["case_reference"] == "'=HYPERLINK(\"x\")"
    assert rows[0]["legal_basis"] == "children_act_1989_s47"


def test_list_refuses_a_period_that_ends_before_it_starts(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--since` after `--until`, or a malformed `--month`, is a usage error."""
    assert _run(capsys, "list", "--state-dir", str(state), "--since", "2026-11-02", "--until", "2026-11-01")[0] == 2
    assert _run(capsys, "list", "--state-dir", str(state), "--month", "2026-13")[0] == 2


def test_who_accessed_answers_the_question_in_one_command(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Who looked at the child's health records last month, for what purpose, under which agreement: one row."""
    code, out, err = _run(capsys, "who-accessed", "--state-dir", str(state), "--policy-dir", str(POLICIES),
                          "--nhs-number", "943 476 5919", "--category", "health", "--month", "2026-10", "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert [(r["user"], r["organisation"], r["purpose"], r["legal_basis"], r["agreement"], r["agency"])
            for r in rows] == [("sw-jones", "csc", "s47_enquiry", "children_act_1989_s47", "mash-isa-2026", "health")]
    assert "1 answer about this person; 1 released records to 1 user" in err


def test_who_accessed_outside_the_period_finds_nothing(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The period narrows the answer: the child's November entries are none."""
    code, out, err = _run(capsys, "who-accessed", "--state-dir", str(state), "--nhs-number", "9434765919",
                          "--month", "2026-11", "--json")
    assert code == 0
    assert out == ""
    assert "0 answers" in err


def test_subject_access_groups_agencies_that_were_never_asked(state: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Entries of agencies a query did not ask are counted by agency, and listed only when asked for."""
    code, out, err = _run(capsys, "subject-access", "--state-dir", str(state), "--nhs-number", "9434765919", "--json")
    assert code == 0
    assert [json.loads(line)["index"] for line in out.splitlines()] == [11]
    assert "left out 1 entry of agencies a query did not ask (education 1)" in err
    code, out, _ = _run(capsys, "subject-access", "--state-dir", str(state), "--nhs-number", "9434765919", "--json",
                        "--include-not-asked")
    listed = {json.loads(line)["index"]: json.loads(line)["event"]["kind"] for line in out.splitlines()}
    # The first subject access is itself an entry about her (12); the one being answered is not part of its answer.
    assert listed == {10: "disclosure", 11: "disclosure", 12: "audit_access"}


def test_subject_access_takes_the_same_filters(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--agency` narrows subject access like listing, and a misspelt one is refused."""
    code, out, _ = _run(capsys, "subject-access", "--state-dir", str(state), "--nhs-number", "9434765919",
                        "--agency", "Police", "--json")
    assert code == 0
    assert out == ""
    code, _, err = _run(capsys, "subject-access", "--state-dir", str(state), "--nhs-number", "9434765919",
                        "--agency", "polce")
    assert code == 2
    assert "did you mean 'police'" in err


def test_subject_access_report_is_plain_language_without_other_peoples_identifiers(
        state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The HTML report spells out purpose, legal basis and agreement, keeps redactions as held back, and holds no
    staff id, case reference, token, record id or caller identity."""
    report = tmp_path / "report.html"
    code, _, _ = _run(capsys, "subject-access", "--state-dir", str(state), "--policy-dir", str(POLICIES),
                      "--nhs-number", "9434765919", "--report", str(report))
    page = report.read_text()
    assert code == 0
    assert page.startswith("<!DOCTYPE html>")
    assert "@media print" in page
    for text in ("Enquiry where there is reasonable cause to suspect a child is suffering significant harm",
                 "Children Act 1989 section 47", "Held back", "a street address", "14 October 2026"):
        assert text in page
    for secret in ("sw-jones", "CASE-SECRET-77", "nhs:", "spiffe://", "REC-SIBLING-9", "k1:AAAA"):
        assert secret not in page


def test_cli_reads_are_audited_like_api_reads(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each read writes an audit_access entry first: the command, declared filter names, free text only as a keyed
    token, and for subject access the person's subject tokens."""
    _run(capsys, "list", "--state-dir", str(state), "--agency", "Health", "--case", "CASE-SECRET-77")
    _run(capsys, "subject-access", "--state-dir", str(state), "--nhs-number", "9434765919")
    listed, subject = _entries(state)[-2:]
    assert listed.kind is subject.kind is AuditKind.AUDIT_ACCESS
    assert listed.details["rpc"] == "cli:list"
    assert listed.details["agency"] == "health"
    assert listed.details["case_reference"].startswith("case_reference:t1:")
    assert "CASE-SECRET-77" not in json.dumps(dict(listed.details))
    assert subject.details["rpc"] == "cli:subject-access"
    assert subject.subject_tokens
    assert all(t.split(":")[1] == "t1" for t in subject.subject_tokens)


def test_show_is_audited_with_the_index_it_read(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`audit show` is recorded with the index it read."""
    before = len(_entries(state))
    code, _, _ = _run(capsys, "show", "3", "--state-dir", str(state))
    after = _entries(state)
    assert code == 0
    assert len(after) == before + 1
    assert after[-1].details == {"rpc": "cli:show", "index": "3"}


def test_report_period_names_the_month(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A report for one month says which period it covers."""
    report = tmp_path / "r.html"
    _run(capsys, "subject-access", "--state-dir", str(state), "--policy-dir", str(POLICIES), "--nhs-number",
         "9434765919", "--month", "2026-10", "--report", str(report))
    assert "1 October 2026 to 31 October 2026" in report.read_text()  # the last day named, not the bound


def test_filters_that_need_the_vocabulary_refuse_to_run_without_it(
        state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An agency or purpose filter cannot be checked without the policy vocabulary, so it is an error naming
    --policy-dir, never an unchecked search."""
    missing = str(tmp_path / "no-policies")
    for option, value in (("--agency", "health"), ("--purpose", "s47_enquiry")):
        code, out, err = _run(capsys, "list", "--state-dir", str(state), "--policy-dir", missing, option, value)
        assert code == 2
        assert "--policy-dir" in err
        assert out == ""
