"""`mash-gateway audit …`: the auditors' commands (list, who-accessed, show, verify, prove, checkpoint,
subject-access, export).

Exit codes: 0 success, 1 verification failed, 2 usage error or the store or keys cannot be opened.
Readable tables by default; `--json` prints JSON (one object per line for listings), `--csv` a spreadsheet.
Every read of entries is itself written to the log (an ``audit_access`` entry) before anything is shown.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import tarfile
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gateway.audit.answers import (
    STATUSES,
    EntryRow,
    Glossary,
    UnknownName,
    csv_text,
    resolve_name,
    subject_report_html,
    was_not_asked,
)
from gateway.audit.backends import open_store
from gateway.audit.checkpoint import (
    CheckpointKeyError,
    PublicKeys,
    SignedCheckpoint,
    key_fingerprint,
    load_public_keys,
    load_signer,
)
from gateway.audit.encoding import event_to_dict, format_timestamp
from gateway.audit.log import AuditLog
from gateway.audit.merkle import ProofError
from gateway.audit.note import COSIGNATURE_V1, ED25519, NoteError, Verifier
from gateway.audit.offline import verify_saved_proof
from gateway.audit.review import AuditRecord, AuditReview, verify_export
from gateway.audit.sqlite_store import path_from_url
from gateway.audit.store import DisclosureStore, EntryFilter, PendingEntry
from gateway.audit.verify import VerifyReport
from gateway.domain import AuditEvent, AuditKind, SubjectIdentifiers, SystemClock
from gateway.errors import AuditUnavailable, Finding, GatewayError, InvalidRequest
from gateway.policy.vocabulary import Vocabulary, load_vocabulary
from gateway.service.audit_reads import read_page
from gateway.service.validation import INVALID, USER_PATTERN

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNSIGNED_TAIL = 3  # everything checked verifies, but the newest entries are not yet signed (or witnessed)


class UsageError(Exception):
    """The command line does not say enough to run the command."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `audit` command group; its commands need `--store`/`--keys` or `--state-dir`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", type=Path, help="gateway state directory (audit.sqlite, keys/)")
    common.add_argument("--store", help="audit store URL: sqlite:///path or postgresql://…")
    common.add_argument("--keys", type=Path, help="checkpoint key directory (<kid>.pub, <kid>.key, active)")
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")

    audit = subparsers.add_parser("audit", help="review, verify and export the audit log")
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--since", help="inclusive start time (ISO 8601; UTC if no offset)")
    filters.add_argument("--until", help="exclusive end time (ISO 8601; UTC if no offset)")
    filters.add_argument("--month", help="the calendar month YYYY-MM (instead of --since/--until)")
    filters.add_argument("--agency", default="", help="the agency asked (any case; checked against the vocabulary)")
    filters.add_argument("--purpose", default="", help="declared purpose (checked against the vocabulary)")
    filters.add_argument("--policy-dir", type=Path, default=Path("policies"),
                         help="policy directory whose vocabulary filters are checked against (default: policies)")
    filters.add_argument("--csv", action="store_true", help="print CSV for spreadsheets instead of a table")

    p = sub.add_parser("list", parents=[common, filters], help="list entries, newest first, with the total")
    for name in ("role", "user", "status"):
        p.add_argument(f"--{name}", default="")
    p.add_argument("--case", dest="case_reference", default="", help="case reference")
    p.add_argument("--kind", default="", help=f"one of {', '.join(k.value for k in AuditKind)}")
    p.add_argument("--token", action="append", default=[], help="subject token (repeatable)")
    p.add_argument("--limit", type=int, default=50, help="entries per page (default 50; 0: all)")
    p.add_argument("--before", type=int, metavar="INDEX", help="next page: only entries before this index")
    p.add_argument("--after", type=int, metavar="INDEX", help="only entries after this index")
    p.add_argument("--oldest-first", action="store_true", help="oldest entries first")
    p.set_defaults(func=_runner(_cmd_list))

    subject = argparse.ArgumentParser(add_help=False)
    for name in ("nhs-number", "given-name", "family-name", "date-of-birth", "postcode"):
        subject.add_argument(f"--{name}", default="")
    subject.add_argument("--token", action="append", default=[], help="subject token (repeatable), instead of "
                                                                        "identifiers")
    subject.add_argument("--token-keys", type=Path,
                         help="subject-token key ring (default keys/subject-token.json)")
    subject.add_argument("--category", default="", help="record category disclosed (checked against the vocabulary)")

    p = sub.add_parser("who-accessed", parents=[common, filters, subject],
                       help="who was given information about one person: when, why, under which agreement")
    p.set_defaults(func=_runner(_cmd_who_accessed))

    p = sub.add_parser("show", parents=[common], help="show one entry in full")
    p.add_argument("index", type=int)
    p.set_defaults(func=_runner(_cmd_show))

    trusted = argparse.ArgumentParser(add_help=False)
    trusted.add_argument("--trusted-checkpoint", type=Path, action="append", default=[], metavar="FILE",
                         help="a checkpoint you kept (JSON, as printed by `checkpoint --json`, or a signed note "
                              "as a witness serves it); the log must still hold and match it (repeatable)")

    witnessed = argparse.ArgumentParser(add_help=False)
    witnessed.add_argument("--witness", action="append", default=[], metavar="VKEY",
                           help="verifier key of a witness you trust, as `witness key` prints it (repeatable)")
    witnessed.add_argument("--quorum", type=int, metavar="K",
                           help="require cosignatures from K of the --witness keys (default: all of them)")

    p = sub.add_parser("verify", parents=[common, trusted, witnessed], help="verify every entry and checkpoint",
                       description="Exit codes: 0 verified; 1 a problem was found; 2 usage error; 3 verified, "
                                   "but entries after the newest checkpoint (or the newest witnessed one, with "
                                   "--witness) are not yet signed.")
    p.set_defaults(func=_runner(_cmd_verify))

    p = sub.add_parser("verify-proof", parents=[witnessed], help="check a saved inclusion proof offline, with no "
                       "database", description="Exit codes: 0 the entry is in the signed (and witnessed) tree; "
                       "1 it is not, or something does not verify; 2 usage error.")
    p.add_argument("proof", type=Path, help="inclusion proof JSON, as `audit prove INDEX --json` writes it")
    p.add_argument("--log-key", action="append", required=True, metavar="VKEY",
                   help="the log's verifier key, as `audit keys` prints it (repeatable, e.g. after rotation)")
    p.add_argument("--checkpoint", type=Path, metavar="FILE",
                   help="the checkpoint as a signed note, e.g. as a witness serves it (default: the proof's own)")
    p.add_argument("--receipt", type=Path, metavar="FILE", help="the receipt JSON ({index, leaf_hash}) to match")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_runner(_cmd_verify_proof))

    p = sub.add_parser("keys", parents=[common], help="print the log's origin and checkpoint verifier keys")
    p.set_defaults(func=_runner(_cmd_keys))

    p = sub.add_parser("prove", parents=[common], help="inclusion proof of an entry, or a consistency proof")
    p.add_argument("index", type=int, nargs="?", help="entry index for an inclusion proof")
    p.add_argument("--tree-size", type=int, help="tree size to prove against (default: latest checkpoint)")
    p.add_argument("--consistency", type=int, nargs="+", metavar="SIZE",
                   help="consistency proof from SIZE1 to SIZE2 (default: current size)")
    p.set_defaults(func=_runner(_cmd_prove))

    p = sub.add_parser("checkpoint", parents=[common], help="sign and store a checkpoint now")
    p.set_defaults(func=_runner(_cmd_checkpoint))

    p = sub.add_parser("subject-access", parents=[common, filters, subject], help="every entry about one person")
    p.add_argument("--kind", default="", help=f"one of {', '.join(k.value for k in AuditKind)}")
    p.add_argument("--include-not-asked", action="store_true",
                   help="also list the entries of agencies a query did not ask (grouped by default)")
    p.add_argument("--report", type=Path, metavar="FILE.html",
                   help="also write a plain-language, printable report for the person (HTML)")
    p.set_defaults(func=_runner(_cmd_subject_access))

    p = sub.add_parser("export", parents=[common], help="write a self-contained, verifiable bundle")
    p.add_argument("dest", type=Path, help="new directory, or a file ending in .tar")
    p.set_defaults(func=_runner(_cmd_export))

    p = sub.add_parser("verify-export", parents=[common, trusted], help="verify an exported bundle offline")
    p.add_argument("bundle", type=Path)
    p.set_defaults(func=_runner(_cmd_verify_export))


# -- plumbing -------------------------------------------------------------------------------------------

_Command = Callable[[argparse.Namespace, Console], Coroutine[Any, Any, int]]


def _console(*, stderr: bool = False) -> Console:
    """A console that prints every string as it is: entries, paths and messages hold text such as
    ``[person.address]`` or ``:name:`` that rich would otherwise take for markup or emoji and drop."""
    stream = sys.stderr if stderr else sys.stdout
    # Piped output gets a wide console so table cells are not folded mid-word.
    return Console(stderr=stderr, soft_wrap=True, width=None if stream.isatty() else 240, markup=False,
                   emoji=False, highlight=False)


def _runner(command: _Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(command(args, _console()))
        except (UsageError, GatewayError) as exc:
            _console(stderr=True).print(Text.assemble(("error:", "red"), f" {exc}"))
            return EXIT_USAGE

    return run


def _store_url(args: argparse.Namespace) -> str:
    if args.store:
        return str(args.store)
    if args.state_dir is not None:
        return f"sqlite:///{args.state_dir / 'audit.sqlite'}"
    raise UsageError("say which audit store to use: --store URL or --state-dir DIR")


def _keys_dir(args: argparse.Namespace) -> Path:
    if args.keys is not None:
        return Path(args.keys)
    if args.state_dir is not None:
        return Path(args.state_dir) / "keys" / "checkpoint"
    raise UsageError("say where the checkpoint keys are: --keys DIR or --state-dir DIR")


def _public_keys(args: argparse.Namespace, *, required: bool) -> PublicKeys:
    try:
        return load_public_keys(_keys_dir(args))
    except (UsageError, CheckpointKeyError):
        if required:
            raise
        return PublicKeys({})


async def _open_store(args: argparse.Namespace) -> DisclosureStore:
    url = _store_url(args)
    if url.startswith("sqlite:") and not await asyncio.to_thread(path_from_url(url).exists):
        # Opening would create an empty log; an auditor asking about a missing file made a mistake.
        raise UsageError("the audit store file does not exist")
    return await open_store(url)


def _entry_json(record: AuditRecord) -> dict[str, Any]:
    return {"index": record.index, "leaf_hash": record.leaf_hash.hex(), "event": event_to_dict(record.event)}


def _print_json(console: Console, value: object) -> None:
    console.out(json.dumps(value, sort_keys=True, ensure_ascii=False))


def _print_rows(console: Console, records: list[AuditRecord], args: argparse.Namespace, title: str) -> None:
    if args.json:
        for record in records:
            _print_json(console, _entry_json(record))
        return
    rows = [EntryRow.of(record) for record in records]
    if getattr(args, "csv", False):
        console.out(csv_text(rows), end="")
        return
    table = Table(title=title)
    for column in ("#", "time (UTC)", "kind", "agency", "status", "level", "organisation", "role", "user",
                   "purpose", "legal basis", "agreement", "categories", "case"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r.index), r.time, r.kind, r.agency, r.status, r.level, r.organisation, r.role, r.user,
                      r.purpose, r.legal_basis, r.agreement, r.categories, r.case_reference)
    console.print(table)


def _note(console: Console, args: argparse.Namespace, text: str) -> None:
    """A count or paging hint: after a table, or on stderr so JSON and CSV output stay machine-readable."""
    if args.json or getattr(args, "csv", False):
        _console(stderr=True).print(text)
    else:
        console.print(text)


def _entries(n: int) -> str:
    return f"{n} entr{'y' if n == 1 else 'ies'}"


def _period(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    """The --since/--until bounds, or those of --month; a period that ends before it starts is a usage error."""
    if args.month:
        if args.since or args.until:
            raise UsageError("give --month or --since/--until, not both")
        try:
            first = datetime.strptime(args.month, "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            raise UsageError("--month must be a month such as 2026-10") from None
        following = first.replace(year=first.year + 1, month=1) if first.month == 12 else \
            first.replace(month=first.month + 1)
        return first, following
    since, until = _parse_time(args.since, "since"), _parse_time(args.until, "until")
    if since is not None and until is not None and since >= until:
        raise UsageError("--until must be later than --since")
    return since, until


def _period_text(since: datetime | None, until: datetime | None) -> str:
    """The period in words for a reader, its last day included: `--month 2026-10` is "1 October 2026 to
    31 October 2026" (the bound `until` itself is exclusive, so its day is not named unless time is left)."""
    def day(moment: datetime) -> str:
        return f"{moment.day} {moment.strftime('%B %Y')}"

    last = until - timedelta(microseconds=1) if until is not None else None
    if since is not None and last is not None:
        return f"{day(since)} to {day(last)}"
    if since is not None:
        return f"from {day(since)}"
    return f"up to {day(last)}" if last is not None else ""


def _vocabulary(args: argparse.Namespace) -> Vocabulary | None:
    """The vocabulary of --policy-dir, to check and spell out declared names; None when no option needs it."""
    if not (args.agency or args.purpose or getattr(args, "role", "") or getattr(args, "category", "")
            or getattr(args, "report", None)):
        return None
    directory = Path(args.policy_dir)
    if not (directory / "vocabulary").is_dir():
        raise UsageError("the policy directory does not exist or has no vocabulary; give --policy-dir DIR")
    findings: list[Finding] = []
    vocabulary = load_vocabulary(directory, findings)
    if any(f.severity == "error" for f in findings):
        raise UsageError("the policy directory's vocabulary has errors; run `mash-gateway policy check`")
    return vocabulary


def _checked(value: str, names: Collection[str], what: str, option: str) -> str:
    try:
        return resolve_name(value, names, what)
    except UnknownName as exc:
        raise UsageError(f"--{option}: {exc}") from None


def _filter(args: argparse.Namespace, vocabulary: Vocabulary | None, tokens: frozenset[str] = frozenset(),
            kind: str = "") -> EntryFilter:
    """The entry filter the options ask for, every declared name checked (case-insensitively) first."""
    since, until = _period(args)
    # Without a vocabulary (no option that needs one was given) the name lists are never consulted.
    agencies: Collection[str] = vocabulary.agencies if vocabulary is not None else ()
    purposes: Collection[str] = vocabulary.purposes if vocabulary is not None else ()
    roles: Collection[str] = vocabulary.roles if vocabulary is not None else ()
    return EntryFilter(
        since=since, until=until,
        kind=kind or _checked(getattr(args, "kind", ""), [k.value for k in AuditKind], "kind", "kind"),
        agency=_checked(args.agency, agencies, "agency", "agency"),
        purpose=_checked(args.purpose, purposes, "purpose", "purpose"),
        role=_checked(getattr(args, "role", ""), roles, "role", "role"),
        user=getattr(args, "user", ""), case_reference=getattr(args, "case_reference", ""),
        status=_checked(getattr(args, "status", ""), STATUSES, "status", "status"),
        subject_tokens=tokens)


async def _record_read(store: DisclosureStore, args: argparse.Namespace, command: str, where: EntryFilter | None,
                       *, details: dict[str, str] | None = None) -> int:
    """Write who read the log from the command line, and what they searched for, before anything is shown;
    returns the index of that entry, so the answer is the log as it stood when asked.

    Free text (a user id or case reference) is kept as a keyed token if the key ring is at hand, as the API
    does; the person searched for is kept as their subject tokens. If the entry cannot be written nothing is
    shown, exactly as with a read through the API.
    """
    found: dict[str, str] = {"rpc": f"cli:{command}", **(details or {})}
    tokens: tuple[str, ...] = ()
    if where is not None:
        tokens = tuple(sorted(where.subject_tokens))
        found.update({name: value for name, value in (
            ("agency", where.agency), ("purpose", where.purpose), ("role", where.role),
            ("status", where.status), ("kind", where.kind),
            ("since", format_timestamp(where.since) if where.since else ""),
            ("until", format_timestamp(where.until) if where.until else "")) if value})
        for name, text in (("user", where.user), ("case_reference", where.case_reference)):
            if text:
                found[name] = _text_token(args, name, text)
    login = getpass.getuser()
    event = AuditEvent(kind=AuditKind.AUDIT_ACCESS, occurred_at=datetime.now(UTC), caller="local:mash-gateway-cli",
                       user=login if USER_PATTERN.fullmatch(login) else INVALID, role="auditor", status="OK",
                       subject_tokens=tokens, details=found)
    try:
        receipts = await store.append([PendingEntry.from_event(event)])
    except GatewayError as exc:
        raise AuditUnavailable(f"this read could not be recorded in the audit log, so nothing is shown ({exc})") \
            from exc
    return receipts[0].index


def _text_token(args: argparse.Namespace, label: str, text: str) -> str:
    ring_path = _ring_path(args, required=False)
    if ring_path is None or not ring_path.exists():
        return "given"  # the key ring is not at hand: the entry records that the filter was used
    from gateway.keyring import load_keyring
    from gateway.linkage import SubjectTokeniser
    return SubjectTokeniser(load_keyring(ring_path)).text_token(label, text)


def _parse_time(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--{name} must be an ISO 8601 date or time, e.g. 2026-11-26T09:00") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _with_review(args: argparse.Namespace,
                       use: Callable[[AuditReview], Awaitable[int]], *, keys_required: bool = False) -> int:
    keys = _public_keys(args, required=keys_required)
    store = await _open_store(args)
    try:
        # No AuditLog up front: verify, export and listing must work on exactly the damage they report.
        return await use(AuditReview(store, keys))
    finally:
        await store.close()


def _print_report(console: Console, report: VerifyReport, as_json: bool,
                  extra: dict[str, Any] | None = None) -> int:
    if as_json:
        _print_json(console, {**(extra or {}),
            "ok": report.ok, "entries": report.entries, "checkpoints": report.checkpoints,
            "root_hash": report.root_hash.hex(), "first_bad_entry": report.first_bad_entry,
            "first_bad_checkpoint": report.first_bad_checkpoint,
            "suspect_range": list(report.suspect_range) if report.suspect_range else None,
            "problems": [{"kind": p.kind, "message": p.message, "entry": p.entry, "checkpoint": p.checkpoint}
                         for p in report.problems],
            "seconds": round(report.seconds, 3), "summary": report.summary(), "uncovered": report.uncovered,
        })
    else:
        console.print(Text(report.summary(), style="green" if report.ok else "red"))
        if not report.ok:
            table = Table(title="problems")
            for column in ("kind", "entry", "checkpoint", "detail"):
                table.add_column(column)
            for p in report.problems[:20]:
                table.add_row(p.kind, "" if p.entry is None else str(p.entry),
                              "" if p.checkpoint is None else f"#{p.checkpoint}", p.message)
            console.print(table)
        else:
            console.print(f"checked in {report.seconds:.2f} s; checkpoint keys: {', '.join(report.key_ids) or '-'}")
    return EXIT_OK if report.ok else EXIT_FAILED


# -- commands -------------------------------------------------------------------------------------------

async def _cmd_list(args: argparse.Namespace, console: Console) -> int:
    if args.limit < 0:
        raise UsageError("--limit must not be negative")
    if args.json and args.csv:
        raise UsageError("give --json or --csv, not both")
    for option in ("before", "after"):
        if getattr(args, option) is not None and getattr(args, option) < 0:
            raise UsageError(f"--{option} must not be negative")
    where = _filter(args, _vocabulary(args), frozenset(args.token))

    async def use(review: AuditReview) -> int:
        asked = await _record_read(review.store, args, "list", where)
        # The same read as AuditService.ListEntries: the total as of this read, then one page.
        page = await read_page(review, where, as_of=asked, newest_first=not args.oldest_first, size=args.limit,
                               after=args.after, before=args.before)
        records, total = page.records, page.total
        _print_rows(console, records, args, "audit entries")
        order = "oldest first" if args.oldest_first else "newest first"
        text = f"{total} matching entr{'y' if total == 1 else 'ies'}; showing {len(records)} ({order})"
        if records and page.more:
            more = f"--after {records[-1].index}" if args.oldest_first else f"--before {records[-1].index}"
            text += f"; next page: {more}"
        _note(console, args, text)
        return EXIT_OK
    return await _with_review(args, use)


async def _cmd_show(args: argparse.Namespace, console: Console) -> int:
    async def use(review: AuditReview) -> int:
        await _record_read(review.store, args, "show", None, details={"index": str(args.index)})
        record = await review.get_entry(args.index)
        if args.json:
            _print_json(console, {**_entry_json(record), "canonical_entry": record.data.decode()})
            return EXIT_OK
        table = Table(title=f"audit entry {record.index}", show_header=False)
        table.add_column("field")
        table.add_column("value")
        table.add_row("leaf hash", record.leaf_hash.hex())
        for key, value in event_to_dict(record.event).items():
            if key == "manifest":
                value = "\n".join(f"{m['record_id']} {m['field'] or '(record)'} [{m['category']}] "
                                  f"{m['disclosure']} {m['operator']} {m['reason']}".rstrip() for m in value)
            elif isinstance(value, list):
                value = "\n".join(value)
            elif isinstance(value, dict):
                value = "\n".join(f"{k}={v}" for k, v in sorted(value.items()))
            table.add_row(key, str(value))
        console.print(table)
        return EXIT_OK
    return await _with_review(args, use)


def _trusted_checkpoints(args: argparse.Namespace) -> list[SignedCheckpoint]:
    checkpoints = []
    for path in args.trusted_checkpoint:
        try:
            text = Path(path).read_text()
            # A signed note (as a witness serves it) starts with the origin line; the JSON form with "{".
            checkpoints.append(SignedCheckpoint.from_dict(json.loads(text)) if text.lstrip().startswith("{")
                               else SignedCheckpoint.from_note(text))
        except (OSError, ValueError, AttributeError, GatewayError) as exc:
            raise UsageError(f"--trusted-checkpoint {path}: not a readable checkpoint ({exc})") from exc
    return checkpoints


def _witnesses(args: argparse.Namespace) -> tuple[list[Verifier], int]:
    try:
        witnesses = [Verifier.parse(v) for v in args.witness]
    except NoteError as exc:
        raise UsageError(f"--witness: {exc}") from exc
    if any(w.sig_type != COSIGNATURE_V1 for w in witnesses):
        raise UsageError("--witness takes a witness's cosignature key (signature type 0x04)")
    quorum = len(witnesses) if args.quorum is None else args.quorum
    if not 0 <= quorum <= len(witnesses) or (args.quorum is not None and not witnesses):
        raise UsageError("--quorum K needs 1 <= K <= the number of --witness keys")
    return witnesses, quorum


async def _cmd_verify(args: argparse.Namespace, console: Console) -> int:
    trusted = _trusted_checkpoints(args)
    witnesses, quorum = _witnesses(args)

    async def use(review: AuditReview) -> int:
        if quorum and review.keys.origin is None:
            raise UsageError("the checkpoint key directory names no log origin, so no witness can have cosigned")
        report = await review.verify(trusted, require_coverage=False, witnesses=witnesses, quorum=quorum)
        code = _print_report(console, report, args.json)
        if code == EXIT_OK and report.uncovered:
            what = "witnessed" if quorum else "signed"
            if not args.json:
                console.print(Text(f"the newest {report.uncovered} entries are not covered by a {what} checkpoint "
                                   "yet (exit code 3)", style="yellow"))
            return EXIT_UNSIGNED_TAIL
        return code
    return await _with_review(args, use, keys_required=True)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{what} {path.name}: not a readable JSON file ({exc})") from exc
    if not isinstance(doc, dict):
        raise UsageError(f"{what} {path.name}: not a JSON object")
    return doc


async def _cmd_verify_proof(args: argparse.Namespace, console: Console) -> int:
    witnesses, quorum = _witnesses(args)
    try:
        log_keys = [Verifier.parse(v) for v in args.log_key]
    except NoteError as exc:
        raise UsageError(f"--log-key: {exc}") from exc
    if any(k.sig_type != ED25519 for k in log_keys):
        raise UsageError("--log-key takes the log's Ed25519 verifier key (signature type 0x01)")
    proof = _read_json(args.proof, "proof")
    receipt = None if args.receipt is None else _read_json(args.receipt, "receipt")
    if args.checkpoint is not None:
        try:
            note = args.checkpoint.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"checkpoint {args.checkpoint.name}: not a readable text file ({exc})") from exc
    else:
        checkpoint = proof.get("checkpoint")
        note = str(checkpoint.get("note") or "") if isinstance(checkpoint, dict) else ""
        if not note:
            raise UsageError("the proof carries no signed-note checkpoint; give one with --checkpoint FILE")
    try:
        result = verify_saved_proof(proof, note, log_keys, witnesses=witnesses, quorum=quorum, receipt=receipt)
    except ProofError as exc:
        if args.json:
            _print_json(console, {"verified": False, "reason": str(exc)})
        else:
            console.print(Text(f"FAILED: {exc}", style="red"))
        return EXIT_FAILED
    doc = {"verified": True, "index": result.index, "tree_size": result.tree_size, "origin": result.origin,
           "witnesses": list(result.witnesses)}
    if args.json:
        _print_json(console, doc)
    else:
        vouched = f"; cosigned by {', '.join(result.witnesses)}" if result.witnesses else ""
        console.print(Text(f"OK: entry {result.index} is in the tree of {result.tree_size} entries that "
                           f"{result.origin} signed{vouched}", style="green"))
    return EXIT_OK


async def _cmd_keys(args: argparse.Namespace, console: Console) -> int:
    keys = _public_keys(args, required=True)
    vkeys = keys.vkeys()
    if args.json:
        _print_json(console, {"origin": keys.origin, "vkeys": vkeys})
    elif keys.origin is None:
        console.print("this key directory names no log origin yet; the gateway adds one when it next starts")
    else:
        console.print(f"origin: {keys.origin}")
        for line in vkeys:
            console.print(line)
    return EXIT_OK


async def _cmd_prove(args: argparse.Namespace, console: Console) -> int:
    if (args.index is None) == (args.consistency is None):
        raise UsageError("give an entry INDEX for an inclusion proof, or --consistency SIZE1 [SIZE2]")
    if args.consistency is not None and len(args.consistency) > 2:
        raise UsageError("--consistency takes SIZE1 and optionally SIZE2")

    async def use(review: AuditReview) -> int:
        try:
            doc = await (_inclusion_doc(review, args.index, args.tree_size) if args.index is not None
                         else _consistency_doc(review, args.consistency))
        except AuditUnavailable as exc:
            # The log failed its own checks on loading: nothing it could prove would mean anything.
            doc = {"type": "inclusion" if args.index is not None else "consistency", "verified": False,
                   "reason": str(exc)}
        if args.json:
            _print_json(console, doc)
        else:
            table = Table(title=f"{doc['type']} proof", show_header=False)
            table.add_column("field")
            table.add_column("value")
            for key, value in doc.items():
                if key.startswith("checkpoint"):
                    value = "none for this tree size (root is unsigned)" if value is None else \
                        f"signed by {value['key_id']} at {value['timestamp']}"
                elif key == "path":
                    value = "\n".join(value) or "(empty)"
                table.add_row(key, str(value))
            console.print(table)
        return EXIT_OK if doc["verified"] else EXIT_FAILED
    return await _with_review(args, use, keys_required=True)


async def _inclusion_doc(review: AuditReview, index: int, tree_size: int | None) -> dict[str, Any]:
    proof = await review.inclusion_proof(index, tree_size)
    reason = ""
    try:
        proof.verify(review.keys)  # entry bytes → leaf → path → the signed checkpoint's root
    except ProofError as exc:
        reason = str(exc)
    return {
        "type": "inclusion", "index": proof.index, "tree_size": proof.tree_size,
        "leaf_hash": proof.leaf_hash.hex(), "path": [p.hex() for p in proof.path],
        "root_hash": proof.root_hash.hex(), "verified": not reason, "reason": reason,
        "checkpoint": None if proof.checkpoint is None else proof.checkpoint.to_dict(),
    }


async def _consistency_doc(review: AuditReview, sizes: list[int]) -> dict[str, Any]:
    proof = await review.consistency_proof(sizes[0], sizes[1] if len(sizes) > 1 else None)
    reason = ""
    try:
        proof.verify(review.keys)  # between the two signed checkpoints' roots
    except ProofError as exc:
        reason = str(exc)
    return {
        "type": "consistency", "size1": proof.size1, "size2": proof.size2, "root1": proof.root1.hex(),
        "root2": proof.root2.hex(), "path": [p.hex() for p in proof.path], "verified": not reason,
        "reason": reason,
        "checkpoint1": None if proof.checkpoint1 is None else proof.checkpoint1.to_dict(),
        "checkpoint2": None if proof.checkpoint2 is None else proof.checkpoint2.to_dict(),
    }


async def _cmd_checkpoint(args: argparse.Namespace, console: Console) -> int:
    signer = load_signer(_keys_dir(args))
    store = await _open_store(args)
    try:
        log = await AuditLog.open(store, signer, SystemClock(), checkpoint_interval=None)
        cp = await log.checkpoint()
    finally:
        await store.close()
    if args.json:
        _print_json(console, cp.to_dict())
    else:
        console.print(f"checkpoint: tree size {cp.tree_size}, root {cp.root_hash.hex()}, "
                      f"{format_timestamp(cp.timestamp)}, key {cp.key_id}")
    return EXIT_OK


def _ring_path(args: argparse.Namespace, *, required: bool = True) -> Path | None:
    ring_path: Path | None = getattr(args, "token_keys", None)
    if ring_path is None and args.state_dir is not None:
        ring_path = Path(args.state_dir) / "keys" / "subject-token.json"
    if ring_path is None and required:
        raise UsageError("give --token-keys FILE or --state-dir DIR to compute subject tokens")
    return ring_path


def _subject_tokens(args: argparse.Namespace) -> frozenset[str]:
    subject = SubjectIdentifiers(nhs_number=args.nhs_number, given_name=args.given_name,
                                 family_name=args.family_name, date_of_birth=args.date_of_birth,
                                 postcode=args.postcode)
    tokens = set(args.token)
    if not subject.is_empty():
        # Imported here: only subject access needs the linkage module and its key ring.
        from gateway.keyring import load_keyring
        from gateway.linkage import SubjectTokeniser

        ring_path = _ring_path(args)
        assert ring_path is not None  # _ring_path raises when it cannot name one
        tokens.update(SubjectTokeniser(load_keyring(ring_path)).all_tokens(subject))
    if not tokens:
        raise UsageError("give the person's identifiers (e.g. --nhs-number, or given name, family name and date "
                         "of birth) or --token")
    return frozenset(tokens)


def _category(args: argparse.Namespace, vocabulary: Vocabulary | None) -> str:
    if not args.category or vocabulary is None:
        return ""
    return _checked(args.category, vocabulary.record_categories, "record category", "category")


def _disclosed(record: AuditRecord, category: str, vocabulary: Vocabulary | None) -> bool:
    """Whether the entry disclosed `category` or a category under it (every category if none is given)."""
    if not category or vocabulary is None:  # a category filter always comes with the vocabulary
        return True
    for name in record.event.categories:
        node = name
        while node:
            if node == category:
                return True
            found = vocabulary.record_categories.get(node)
            node = found.parent if found is not None else ""
    return False


async def _cmd_who_accessed(args: argparse.Namespace, console: Console) -> int:
    if args.json and args.csv:
        raise UsageError("give --json or --csv, not both")
    tokens = _subject_tokens(args)
    vocabulary = _vocabulary(args)
    where = _filter(args, vocabulary, tokens, kind=AuditKind.DISCLOSURE.value)
    category = _category(args, vocabulary)

    async def use(review: AuditReview) -> int:
        asked = await _record_read(review.store, args, "who-accessed", where,
                                   details={"category": category} if category else None)
        records = [r async for r in review.list_entries(where, before=asked)
                   if not was_not_asked(r) and _disclosed(r, category, vocabulary)]
        _print_rows(console, records, args, "who was given information about this person")
        released = [r for r in records if r.event.status == "MATCH"]
        people = {(r.event.caller, r.event.user) for r in released}
        _note(console, args, f"{len(records)} answer{'' if len(records) == 1 else 's'} about this person; "
                             f"{len(released)} released records to "
                             f"{len(people)} user{'' if len(people) == 1 else 's'}")
        return EXIT_OK
    return await _with_review(args, use)


async def _cmd_subject_access(args: argparse.Namespace, console: Console) -> int:
    if args.json and args.csv:
        raise UsageError("give --json or --csv, not both")
    tokens = _subject_tokens(args)
    vocabulary = _vocabulary(args)
    where = _filter(args, vocabulary, tokens)
    category = _category(args, vocabulary)

    async def use(review: AuditReview) -> int:
        asked = await _record_read(review.store, args, "subject-access", where,
                                   details={"category": category} if category else None)
        try:
            found = [r async for r in review.subject_access(tokens, where, before=asked)
                     if _disclosed(r, category, vocabulary)]
        except InvalidRequest as exc:
            raise UsageError(str(exc)) from exc
        not_asked = [r for r in found if was_not_asked(r)]
        shown = found if args.include_not_asked else [r for r in found if not was_not_asked(r)]
        _print_rows(console, shown, args, "entries about this person")
        text = _entries(len(shown))
        if not_asked and not args.include_not_asked:
            groups = Counter(r.event.agency for r in not_asked)
            text += (f"; left out {_entries(len(not_asked))} of agencies a query did not ask ("
                     + ", ".join(f"{agency} {n}" for agency, n in sorted(groups.items()))
                     + "); --include-not-asked lists them")
        _note(console, args, text)
        if args.report is not None:
            assert vocabulary is not None  # _vocabulary loads it (or refuses) for --report
            since, until = _period(args)
            period = _period_text(since, until)
            page = subject_report_html([r for r in found if not was_not_asked(r)], _glossary(vocabulary),
                                       generated_at=datetime.now(UTC), period=period, not_asked=len(not_asked))
            await asyncio.to_thread(Path(args.report).write_text, page, encoding="utf-8")
            _note(console, args, "wrote the report for the person")
        return EXIT_OK
    return await _with_review(args, use)


def _glossary(vocabulary: Vocabulary) -> Glossary:
    categories = {name: c.description for name, c in vocabulary.record_categories.items()}
    categories.update({name: c.description for name, c in vocabulary.field_categories.items()})
    return Glossary(
        agencies={name: a.title for name, a in vocabulary.agencies.items()},
        roles={name: r.description for name, r in vocabulary.roles.items()},
        purposes={name: p.description for name, p in vocabulary.purposes.items()},
        legal_bases={name: b.title for name, b in vocabulary.legal_bases.items()},
        agreements={name: a.title for name, a in vocabulary.agreements.items()},
        categories=categories)


async def _cmd_export(args: argparse.Namespace, console: Console) -> int:
    async def use(review: AuditReview) -> int:
        await _record_read(review.store, args, "export", None)
        summary = await review.export(args.dest)
        doc = {"path": str(summary.path), "entries": summary.entries, "checkpoints": summary.checkpoints,
               "root_hash": summary.root_hash.hex(), "key_fingerprints": summary.key_fingerprints,
               "left_out": summary.left_out}
        if args.json:
            _print_json(console, doc)
        else:
            console.print(f"exported {summary.entries} entries and {summary.checkpoints} checkpoints to "
                          f"{summary.path}; root {summary.root_hash.hex()}")
            if summary.left_out:
                console.print(Text(f"{summary.left_out} newer entries are not covered by a checkpoint yet and "
                                   "were left out; run `audit checkpoint` first to include them", style="yellow"))
            for kid, fingerprint in summary.key_fingerprints.items():
                console.print(f"  key {kid}: sha256 {fingerprint}")
        return EXIT_OK
    return await _with_review(args, use, keys_required=True)


async def _cmd_verify_export(args: argparse.Namespace, console: Console) -> int:
    trusted: PublicKeys | None = None
    if args.keys is not None or args.state_dir is not None:
        trusted = _public_keys(args, required=True)
    if not args.bundle.exists():
        raise UsageError("the bundle does not exist")
    report = verify_export(args.bundle, trusted_keys=trusted, trusted_checkpoints=_trusted_checkpoints(args))
    used = trusted
    if used is None:
        try:
            used = _bundle_keys(args.bundle)
        except (GatewayError, OSError, tarfile.TarError):
            used = PublicKeys({})
    fingerprints = {kid: key_fingerprint(key) for kid, key in sorted(used.items())}
    code = _print_report(console, report, args.json,
                         {"keys_trusted": trusted is not None, "key_fingerprints": fingerprints})
    if not args.json:
        if trusted is None:
            console.print(Text("checked with the bundle's own keys; compare their fingerprints with the "
                               "gateway's published ones (or pass --keys)", style="yellow"))
        for kid, fingerprint in fingerprints.items():
            console.print(f"  key {kid}: sha256 {fingerprint}")
    return code


def _bundle_keys(bundle: Path) -> PublicKeys:
    if bundle.is_dir():
        return load_public_keys(bundle / "keys")
    with tarfile.open(bundle) as tar:
        pems = {}
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith("keys/") and member.name.endswith(".pub"):
                fh = tar.extractfile(member)
                if fh is not None:
                    pems[member.name[5:-4]] = fh.read()
    return PublicKeys.from_pem(pems)
