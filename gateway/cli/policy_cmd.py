"""`mash-gateway policy check|test|explain|diff|matrix|keygen|propose|approve|release|show`: the IG officer's and
policy administrator's tools for a policy directory and its signed releases."""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from itertools import groupby
from pathlib import Path

from rich.console import Console
from rich.table import Table

from gateway.domain import DisclosureLevel
from gateway.errors import Finding, PolicyError
from gateway.policy.agreements import agreement_refusal
from gateway.policy.checks import check_directory, is_blocking, verify_against_casbin
from gateway.policy.diff import CHANGED, NARROWER, WIDER, concrete_cells, diff_settings, diff_snapshots, materialise
from gateway.policy.index import Decision
from gateway.policy.policy_tests import failures_as_findings, load_test_cases, run_suite
from gateway.policy.release import (
    FILES,
    PROPOSAL,
    ReleaseError,
    Signers,
    approve,
    current_release,
    describe,
    generate_key,
    load_private_key,
    propose,
    release,
    release_dir,
    required_approvals,
)
from gateway.policy.snapshot import PolicySnapshot, PolicyUnreadable, load_snapshot

DEFAULT_DIR = Path("policies")
CLEAN, FINDINGS, UNLOADABLE = 0, 1, 2
# A question no request could ask (undeclared names, a group, a category of another agency) is a usage
# error, like a policy that cannot be loaded: there is no answer to give.
UNANSWERABLE = UNLOADABLE
_LETTER = {
    DisclosureLevel.NONE: "·",
    DisclosureLevel.EXISTS: "E",
    DisclosureLevel.PERTINENT: "P",
    DisclosureLevel.FULL: "F",
}
_MARK = {WIDER: "▲", NARROWER: "▼", CHANGED: "•"}
_STYLE = {
    DisclosureLevel.NONE: "dim",
    DisclosureLevel.EXISTS: "yellow",
    DisclosureLevel.PERTINENT: "cyan",
    DisclosureLevel.FULL: "green",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `policy` command group to the top-level parser."""
    policy = sub.add_parser("policy", help="check, test, explain, diff and tabulate access policies")
    actions = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")

    check = actions.add_parser("check", help="report every problem in a policy directory as file:line")
    check.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    check.add_argument("--strict", action="store_true", help="warnings count as findings too")
    check.add_argument(
        "--today",
        type=date.fromisoformat,
        default=None,
        help="judge agreement expiry as of this date (YYYY-MM-DD)",
    )
    check.add_argument(
        "--verify",
        type=int,
        default=0,
        metavar="N",
        help="also cross-check N decisions against Casbin's own enforcer (slow)",
    )
    check.set_defaults(func=run_check)

    test = actions.add_parser("test", help="run the policy tests in DIR/tests/*.yaml")
    test.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    test.add_argument("-v", "--verbose", action="store_true", help="list passing tests too")
    test.set_defaults(func=run_test)

    explain = actions.add_parser("explain", help="the level one request gets, and the lines that decided it")
    explain.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    explain.add_argument("--role", required=True)
    explain.add_argument("--purpose", required=True)
    explain.add_argument("--agency", required=True)
    explain.add_argument("--category", required=True)
    explain.add_argument("--agreement", help="the agreement the request cites: also check it allows the request")
    explain.add_argument(
        "--requester",
        help="the agency whose certificate asks, e.g. a borough's hub (default: the role's own agency)",
    )
    explain.add_argument(
        "--date",
        type=date.fromisoformat,
        default=None,
        help="the day of the request (YYYY-MM-DD; default today), for the agreement's term",
    )
    explain.set_defaults(func=run_explain)

    diff = actions.add_parser("diff", help="every (role, purpose, agency, category) whose level changes")
    diff.add_argument("old", help="a policy directory, or a git revision such as HEAD~1:policies")
    diff.add_argument("new", help="a policy directory, or a git revision such as HEAD:policies")
    diff.set_defaults(func=run_diff)

    matrix = actions.add_parser("matrix", help="the effective-access matrix as a table, or CSV")
    matrix.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    matrix.add_argument(
        "--csv",
        type=Path,
        default=None,
        metavar="FILE",
        help="write every cell with its level and deciding lines ('-' for standard output)",
    )
    matrix.add_argument("--purpose", action="append", default=None, help="only these purposes")
    matrix.add_argument("--role", action="append", default=None, help="only these roles")
    matrix.set_defaults(func=run_matrix)
    _register_releases(actions)


def _register_releases(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--releases", type=Path, required=True, help="the release store directory")
    signer = argparse.ArgumentParser(add_help=False)
    signer.add_argument("--key", type=Path, required=True, help="your Ed25519 signing key (from `policy keygen`)")
    signer.add_argument("--as", dest="signer", required=True, help="your name as the signers file lists it")

    keygen = actions.add_parser("keygen", help="make an Ed25519 signing key; prints the public key for the "
                                               "signers file")
    keygen.add_argument("key", type=Path, help="where to write the private key (must not exist)")
    keygen.set_defaults(func=run_keygen)

    propose = actions.add_parser("propose", parents=[store, signer],
                                 help="copy a policy directory into the release store as a signed proposal")
    propose.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    propose.add_argument("--base", help="the release it replaces (default: the store's current release)")
    propose.set_defaults(func=run_propose)

    approve = actions.add_parser("approve", parents=[store, signer],
                                 help="approve a proposed release as an agency's IG officer")
    approve.add_argument("version", help="the release id (policy version, or a unique prefix of it)")
    approve.add_argument("--agency", required=True, help="the agency you approve for")
    approve.set_defaults(func=run_approve)

    release = actions.add_parser("release", parents=[store, signer],
                                 help="release an approved proposal: the gateway activates it on its next reload")
    release.add_argument("version")
    release.add_argument("--signers", type=Path, required=True, help="the signers file (public keys)")
    release.set_defaults(func=run_release)

    show = actions.add_parser("show", parents=[store],
                              help="the release of a policy version: who proposed, approved, released it; files")
    show.add_argument("version", help="a policy_version as the audit log shows it")
    show.add_argument("--file", help="print this file of the release with line numbers")
    show.set_defaults(func=run_show)


def _console() -> Console:
    return Console(file=sys.stdout, width=160, highlight=False, soft_wrap=True)


def _print_findings(console: Console, findings: Sequence[Finding]) -> None:
    for f in findings:
        tag = "" if is_blocking(f) else "warning: "
        console.print(f"{f.file}:{f.line}: {tag}{f.message}", markup=False)


def _load(console: Console, directory: Path) -> PolicySnapshot | int:
    """The snapshot, or the exit code after printing why it could not be loaded."""
    try:
        return load_snapshot(directory)
    except PolicyUnreadable as exc:
        _print_findings(console, exc.findings)
        console.print(f"could not load the policy at {directory}", markup=False)
        return UNLOADABLE
    except PolicyError as exc:
        _print_findings(console, exc.findings)
        console.print(f"{len(exc.findings)} finding(s); the policy cannot be activated", markup=False)
        return FINDINGS


def run_check(args: argparse.Namespace) -> int:
    console = _console()
    try:
        report = check_directory(args.directory, args.today or datetime.now(UTC).date())
    except PolicyUnreadable as exc:
        _print_findings(console, exc.findings)
        console.print(f"could not load the policy at {args.directory}", markup=False)
        return UNLOADABLE
    findings = list(report.findings)  # workflow.yaml's findings included: it is part of the policy
    errors = [f for f in findings if is_blocking(f)]
    if args.verify and not errors:
        findings += verify_against_casbin(report.snapshot, args.verify)
        errors = [f for f in findings if is_blocking(f)]
    _print_findings(console, findings)
    warnings = len(findings) - len(errors)
    console.print(
        f"policy {report.version}: {report.lines} lines, {len(errors)} error(s), {warnings} warning(s)",
        markup=False,
    )
    return FINDINGS if errors or (args.strict and findings) else CLEAN


def run_test(args: argparse.Namespace) -> int:
    console = _console()
    loaded = _load(console, args.directory)
    if isinstance(loaded, int):
        return loaded
    suite = load_test_cases(args.directory)
    results = run_suite(loaded, suite)
    failed = [r for r in results if not r.passed]
    if args.verbose:
        table = Table("result", "test", "where", title=f"policy tests in {args.directory}")
        for r in results:
            table.add_row("[green]pass[/]" if r.passed else "[red]FAIL[/]", r.case.name, r.case.where)
        console.print(table)
    _print_findings(console, failures_as_findings(failed, suite))
    console.print(
        f"{len(results) - len(failed)} passed, {len(failed)} failed"
        + (f", {len(suite.findings)} unreadable" if suite.findings else ""),
        markup=False,
    )
    deadline_problems = _workflow_tests(console, loaded, args.directory)
    return FINDINGS if failed or suite.findings or deadline_problems else CLEAN


def _workflow_tests(console: Console, snapshot: PolicySnapshot, directory: Path) -> int:
    """Run the workflow deadline tests when there is a workflow policy; how many failed or were unreadable."""
    from gateway.workflow.policy_tests import run_deadline_tests

    if snapshot.workflow is None:
        return 0
    passed, problems = run_deadline_tests(snapshot.workflow, directory)
    _print_findings(console, problems)
    console.print(f"workflow deadlines: {passed} passed, {len(problems)} failed", markup=False)
    return len(problems)


def run_explain(args: argparse.Namespace) -> int:
    console = _console()
    loaded = _load(console, args.directory)
    if isinstance(loaded, int):
        return loaded
    problems = loaded.request_problems(args.role, args.purpose, args.agency, args.category)
    if problems:
        for _, text in problems:
            console.print(text, markup=False)
        console.print("no request can be made as written, so there is nothing to explain", markup=False)
        return UNANSWERABLE
    decision = loaded.decide(args.role, args.purpose, args.agency, args.category)
    matching = loaded.matching_lines(args.role, args.purpose, args.agency, args.category)
    refusal = ""
    on = args.date or datetime.now(UTC).date()
    requester = args.requester or loaded.roles[args.role].agency
    if args.requester is not None and args.requester not in loaded.agencies:
        console.print(loaded.vocabulary.unknown("agency", args.requester, loaded.agencies), markup=False)
        return UNANSWERABLE
    if args.agreement is not None:
        if args.agreement not in loaded.agreements:
            console.print(loaded.vocabulary.unknown("agreement", args.agreement, loaded.agreements), markup=False)
            return UNANSWERABLE
        refusal = agreement_refusal(
            loaded,
            args.agreement,
            requester=requester,
            purpose=args.purpose,
            agency=args.agency,
            category=args.category,
            on=on,
        )
    level = DisclosureLevel.NONE if refusal else decision.level
    under = f" under {args.agreement} on {on.isoformat()}" if args.agreement else ""
    asking = f"{args.role} of {requester}" if args.requester else args.role
    console.print(
        f"{asking} asking {args.agency} about {args.category} for {args.purpose}{under}: "
        f"[bold {_STYLE[level]}]{level.name}[/]"
    )
    if refusal:
        console.print(f"refused by the agreement: {refusal} (the policy lines alone would give "
                      f"{decision.level.name})", markup=False)
    matched = (*matching.allows, *matching.denies, *matching.reviews)
    if not matched:
        console.print("no policy line matches: nothing is granted by default")
    table = Table("", "line", "effect", "level", "rule", title="matching policy lines")
    deciding = set(decision.allowed_by) | set(decision.denied_by) | set(decision.reviewed_by)
    for line in sorted(matched, key=lambda ln: (ln.file, ln.line)):
        mark = "decided" if line.where in deciding else ""
        table.add_row(mark, line.where, line.effect.value, line.level.name, line.text())
    if matched:
        console.print(table)
    if decision.denied_by:
        console.print(
            f"capped by deny {', '.join(decision.denied_by)}: a deny at a level forbids that "
            "level and every level above it",
            markup=False,
        )
    elif decision.allowed_by and not decision.review:
        console.print(f"granted by {', '.join(decision.allowed_by)}", markup=False)
    if decision.review:
        first = loaded.reviewers(args.agency)
        escalation = [r for r in loaded.reviewers(args.agency, escalated=True) if r not in first]
        console.print(
            f"under review: {decision.level.name} until a reviewer decides; up to {decision.review.name} "
            f"once {args.agency} approves (review line {', '.join(decision.reviewed_by)})",
            markup=False,
        )
        console.print(
            f"reviewed by {args.agency}: {', '.join(first) or 'no role (policy check reports this)'}"
            + (f"; after escalation also {', '.join(escalation)}" if escalation else ""),
            markup=False,
        )
    console.print(f"policy version {loaded.version}", markup=False)
    return CLEAN


def run_diff(args: argparse.Namespace) -> int:
    console = _console()
    try:
        with materialise(args.old) as old_dir, materialise(args.new) as new_dir:
            old = _load(console, old_dir)
            new = _load(console, new_dir)
    except PolicyUnreadable as exc:
        _print_findings(console, exc.findings)
        return UNLOADABLE
    if isinstance(old, int) or isinstance(new, int):
        return UNLOADABLE
    changes, vocab_changes = diff_snapshots(old, new)
    settings = diff_settings(old, new)
    console.print(f"old {args.old} ({old.version})\nnew {args.new} ({new.version})", markup=False)
    for change in vocab_changes:
        console.print(f"{'+' if change.added else '-'} {change.kind}: {change.name}", markup=False)
    if settings:
        wider = sum(1 for setting in settings if setting.widened)
        narrower = sum(1 for setting in settings if setting.direction == NARROWER)
        console.print(
            f"{len(settings)} other change(s): {wider} wider, {narrower} narrower, "
            f"{len(settings) - wider - narrower} to review",
            markup=False,
        )
        for setting in settings:
            console.print(
                f"{_MARK[setting.direction]} {setting.area} {setting.subject}: {setting.change}", markup=False
            )
    anything = bool(changes or vocab_changes or settings)
    if not changes:
        console.print("no effective access changes")
        if not anything:
            console.print("nothing else changes either", markup=False)
        return FINDINGS if anything else CLEAN
    widened = sum(1 for c in changes if c.widened)
    console.print(f"{len(changes)} change(s): {widened} wider, {len(changes) - widened} narrower")
    for (role, purpose), group in groupby(changes, key=lambda c: (c.role, c.purpose)):
        table = Table(
            "agency",
            "category",
            "old",
            "",
            "new",
            "old lines",
            "new lines",
            title=f"{role} for {purpose}",
            title_justify="left",
        )
        for c in group:
            arrow = "[red]▲[/]" if c.widened else "[green]▼[/]"
            table.add_row(
                c.agency, c.category, c.old_text, arrow, c.new_text, ", ".join(c.old_by), ", ".join(c.new_by)
            )
        console.print(table)
    return FINDINGS


def run_matrix(args: argparse.Namespace) -> int:
    console = _console()
    loaded = _load(console, args.directory)
    if isinstance(loaded, int):
        return loaded
    cells = [
        c
        for c in concrete_cells(loaded)
        if (not args.role or c[0] in args.role) and (not args.purpose or c[1] in args.purpose)
    ]
    if args.csv is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            ["role", "purpose", "agency", "category", "level", "allowed_by", "denied_by", "review", "reviewed_by"]
        )
        for role, purpose, agency, category in cells:
            d = loaded.decide(role, purpose, agency, category)
            writer.writerow(
                [role, purpose, agency, category, d.level.name, " ".join(d.allowed_by), " ".join(d.denied_by),
                 d.review.name if d.review else "", " ".join(d.reviewed_by)]
            )
        if str(args.csv) == "-":
            sys.stdout.write(buffer.getvalue())
        else:
            try:
                args.csv.write_text(buffer.getvalue(), encoding="utf-8")
            except OSError as exc:
                console.print(f"cannot write {args.csv}: {exc.strerror or exc}", markup=False)
                return UNLOADABLE
            console.print(f"wrote {len(cells)} rows to {args.csv}", markup=False)
        return CLEAN
    holding = [a for a, v in loaded.agencies.items() if v.holds_records]
    order = {
        a: [c for c, v in loaded.record_categories.items() if v.agency == a and not v.group] for a in holding
    }
    table = Table("role", "purpose", *holding, title=f"effective access ({loaded.version[:19]}…)")
    for (role, purpose), group in groupby(cells, key=lambda c: (c[0], c[1])):
        decided = {c[3]: loaded.decide(*c) for c in group}
        row = []
        for agency in holding:
            row.append("".join(_matrix_cell(decided[c]) for c in order[agency]))
        table.add_row(role, purpose, *row)
    console.print(table)
    console.print(
        "one letter per record category, in catalogue order: F full, P pertinent, E exists, · none; "
        "lower case: that level after review (the granted level shows in the cell's colour)"
    )
    return CLEAN



def run_keygen(args: argparse.Namespace) -> int:
    console = _console()
    if args.key.exists():
        console.print("the key file already exists; choose another path", markup=False)
        return UNLOADABLE
    public = generate_key(args.key)
    console.print(f"wrote the private key; its public key, for the signers file:\n{public}", markup=False)
    return CLEAN


def _store_snapshot(store: Path, version: str) -> PolicySnapshot | None:
    """The snapshot of a release in the store, or None if there is no such release."""
    if not version:
        return None
    try:
        return load_snapshot(release_dir(store, version) / FILES)
    except ReleaseError:
        return None


def _current_or_empty(store: Path) -> str:
    try:
        return current_release(store)
    except ReleaseError:
        return ""


def run_propose(args: argparse.Namespace) -> int:
    console = _console()
    base_version = args.base or _current_or_empty(args.releases)
    base = _store_snapshot(args.releases, base_version)
    if args.base and base is None:
        console.print("--base names no release in the store", markup=False)
        return UNLOADABLE
    try:
        version = propose(args.releases, args.directory, base, admin=args.signer, key=load_private_key(args.key))
        record = describe(args.releases, version)
    except PolicyUnreadable as exc:
        _print_findings(console, exc.findings)
        return UNLOADABLE
    except PolicyError as exc:
        _print_findings(console, exc.findings)
        console.print("the policy cannot be activated, so it cannot be proposed", markup=False)
        return FINDINGS
    except ReleaseError as exc:
        console.print(str(exc), markup=False)
        return FINDINGS
    console.print(f"proposed release {version}\n{record.summary}", markup=False)
    owners, _ = required_approvals(base, load_snapshot(record.directory))
    for agency, widenings in owners.items():
        console.print(f"needs the approval of {agency}'s IG officer ({len(widenings)} ▲)", markup=False)
    return CLEAN


def run_approve(args: argparse.Namespace) -> int:
    console = _console()
    try:
        record = describe(args.releases, args.version)
        owners, _ = required_approvals(_store_snapshot(args.releases, _proposal_base(args.releases, record.version)),
                                       load_snapshot(record.directory))
        for line in owners.get(args.agency, []):
            console.print(line, markup=False)
        approve(args.releases, record.version, agency=args.agency, officer=args.signer, key=load_private_key(args.key))
    except ReleaseError as exc:
        console.print(str(exc), markup=False)
        return FINDINGS
    console.print(f"{args.signer} approved release {record.version} for {args.agency}", markup=False)
    return CLEAN


def _proposal_base(store: Path, version: str) -> str:
    proposal = json.loads((release_dir(store, version) / PROPOSAL).read_text(encoding="utf-8"))
    return str(proposal.get("base_version", ""))


def run_release(args: argparse.Namespace) -> int:
    console = _console()
    try:
        signers = Signers.load(args.signers)
        version = describe(args.releases, args.version).version
        current = _current_or_empty(args.releases)
        active = _store_snapshot(args.releases, current if current != version else _proposal_base(args.releases,
                                                                                                   version))
        verified = release(args.releases, version, signers, active, admin=args.signer, key=load_private_key(args.key))
    except ReleaseError as exc:
        console.print(str(exc), markup=False)
        return FINDINGS
    console.print(f"released {verified.version}; approved by {', '.join(verified.approvers) or 'no one needed'}\n"
                  f"{verified.summary}\nthe gateway activates it on its next reload (SIGHUP or ReloadPolicy)",
                  markup=False)
    return CLEAN


def run_show(args: argparse.Namespace) -> int:
    console = _console()
    try:
        record = describe(args.releases, args.version)
    except ReleaseError as exc:
        console.print(str(exc), markup=False)
        return UNLOADABLE
    if args.file:
        if args.file not in record.files:
            console.print("the release has no such file", markup=False)
            return UNLOADABLE
        for number, text in enumerate((record.directory / args.file).read_text(encoding="utf-8").splitlines(), 1):
            console.print(f"{number:5} {text}", markup=False)
        return CLEAN
    console.print(f"release {record.version}\nproposed by {record.proposed_by} at {record.proposed_at}\n"
                  f"released by {record.released_by or '(not released)'} at {record.released_at or '-'}\n"
                  f"approved by {', '.join(record.approvers) or '-'}\n{record.summary}", markup=False)
    for name in record.files:
        digest = hashlib.sha256((record.directory / name).read_bytes()).hexdigest()
        console.print(f"  {name}  sha256:{digest}", markup=False)
    return CLEAN


def _matrix_cell(decision: Decision) -> str:
    """A level letter; a cell under review shows the reviewed level in lower case, coloured by the level granted now."""
    if decision.review:
        return f"[{_STYLE[decision.level]} underline]{_LETTER[decision.review].lower()}[/]"
    return f"[{_STYLE[decision.level]}]{_LETTER[decision.level]}[/]"
