"""An immutable, validated policy snapshot: vocabularies, lines, redaction rules and the decision index."""

from __future__ import annotations

import contextlib
import gc
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import Finding, PolicyError
from gateway.policy.casbin_model import MODEL_FILE, build_enforcer, check_model
from gateway.policy.index import NOTHING, Decision, DecisionIndex, build_index
from gateway.policy.rules import ANY, Effect, PolicyLine, load_lines
from gateway.policy.sources import SourceError, content_hash, read_tree, tree_hash
from gateway.policy.vocabulary import (
    Agency,
    Agreement,
    Area,
    FieldCategory,
    LegalBasis,
    Purpose,
    RecordCategory,
    Role,
    Vocabulary,
    load_vocabulary,
    undeclared,
)
from gateway.redaction import RedactionRules, Safeguarding, load_rules
from gateway.workflow.policy import WorkflowPolicy, workflow_for

if TYPE_CHECKING:
    import casbin

REDACTION_FILE = "redaction.yaml"

_EMPTY: Mapping[str, Mapping[str, Decision]] = {}


@dataclass(frozen=True, slots=True)
class MatchingLines:
    """Every policy line that matches one request cell, for explaining a decision."""

    allows: tuple[PolicyLine, ...]
    denies: tuple[PolicyLine, ...]
    reviews: tuple[PolicyLine, ...] = ()


@dataclass(frozen=True, eq=False)
class PolicySnapshot:
    """One loaded policy directory. Immutable; decisions are plain lookups in a precomputed index."""

    version: str
    directory: Path
    vocabulary: Vocabulary
    lines: tuple[PolicyLine, ...]
    index: DecisionIndex
    redaction: RedactionRules
    model_text: str
    _enforcer: list[casbin.Enforcer] = field(default_factory=list, repr=False)
    # workflow.yaml (ratings, deadlines, decisions), checked against this policy and activated with it; None
    # when the directory has none.
    workflow: WorkflowPolicy | None = None

    # -- vocabularies -----------------------------------------------------------------------------
    @property
    def agencies(self) -> Mapping[str, Agency]:
        return self.vocabulary.agencies

    @property
    def roles(self) -> Mapping[str, Role]:
        return self.vocabulary.roles

    @property
    def purposes(self) -> Mapping[str, Purpose]:
        return self.vocabulary.purposes

    @property
    def legal_bases(self) -> Mapping[str, LegalBasis]:
        return self.vocabulary.legal_bases

    @property
    def record_categories(self) -> Mapping[str, RecordCategory]:
        return self.vocabulary.record_categories

    @property
    def protected_categories(self) -> frozenset[str]:
        """Every protected record category, including each category below a protected one."""
        return frozenset(n for n, c in self.vocabulary.record_categories.items() if c.protected)

    @property
    def field_categories(self) -> Mapping[str, FieldCategory]:
        return self.vocabulary.field_categories

    @property
    def agreements(self) -> Mapping[str, Agreement]:
        return self.vocabulary.agreements

    @property
    def bindings(self) -> Mapping[str, frozenset[str]]:
        return self.vocabulary.bindings

    @property
    def areas(self) -> Mapping[str, Area]:
        return self.vocabulary.areas

    def area_of(self, agency: str) -> str:
        """The area `agency` serves; "" when it serves the whole partnership or is not declared."""
        found = self.vocabulary.agencies.get(agency)
        return found.area if found is not None else ""

    def area_refusal(self, agreement: str, requester: str, agency: str) -> str:
        """Why `requester` may not ask `agency` under `agreement` because they serve different areas, or "".

        An agency of one area answers another area's requester only under a cross-area agreement; an agency
        without an area (or a requester without one, or not declared at all) is not limited by area.
        """
        asking, answering = self.area_of(requester), self.area_of(agency)
        if not asking or not answering or asking == answering:
            return ""
        cited = self.vocabulary.agreements.get(agreement)
        if cited is None or cited.cross_area:
            return ""
        return (
            f"agreement {agreement} is not a cross-area agreement: "
            f"{requester} ({asking}) may not ask {agency} ({answering}) under it"
        )

    # -- decisions (hot path) ---------------------------------------------------------------------
    def decide(self, role: str, purpose: str, agency: str, category: str) -> Decision:
        """The decision for one cell; NONE for any name the vocabularies do not declare."""
        found = self.index.decisions.get((role, purpose, category), NOTHING)
        if found is not NOTHING and self.vocabulary.record_categories[category].agency != agency:
            return NOTHING
        return found

    def decisions_for(self, role: str, purpose: str) -> Mapping[str, Mapping[str, Decision]]:
        """Every agency's record categories and their decisions for one query; empty for unknown names."""
        return self.index.by_query.get((role, purpose), _EMPTY)

    # -- names and hierarchies --------------------------------------------------------------------
    def roles_for(self, identity: str) -> frozenset[str]:
        """The roles a certificate identity may assert (none if it is not bound)."""
        return self.vocabulary.bindings.get(identity, frozenset())

    def purpose_within(self, purpose: str, ancestor: str) -> bool:
        """True when `purpose` is `ancestor` or sits below it."""
        return ancestor in self.index.purpose_ancestors.get(purpose, ())

    def category_within(self, category: str, ancestor: str) -> bool:
        """True when `category` is `ancestor` or sits below it."""
        return ancestor in self.index.category_ancestors.get(category, ())

    def role_within(self, role: str, ancestor: str) -> bool:
        """True when `role` is `ancestor` or a member of it, directly or through groups."""
        return ancestor in self.index.role_ancestors.get(role, ())

    def reviewers(self, agency: str, *, escalated: bool = False) -> tuple[str, ...]:
        """The roles that decide `agency`'s reviews: its first reviewers, plus its escalation ones once escalated."""
        kinds = ("first", "escalation") if escalated else ("first",)
        return tuple(n for n, r in self.vocabulary.roles.items() if r.reviews in kinds and r.agency == agency)

    @property
    def open_case_category(self) -> str:
        return self.vocabulary.open_case_category

    @property
    def open_case_agency(self) -> str:
        return self.open_case_agency_for("child")

    def open_case_category_for(self, subject_kind: str) -> str:
        return self.vocabulary.open_case_category_for(subject_kind)

    def open_case_agency_for(self, subject_kind: str) -> str:
        category = self.vocabulary.record_categories.get(self.open_case_category_for(subject_kind))
        return category.agency if category else ""

    def is_category(self, name: str) -> bool:
        return name in self.vocabulary.record_categories

    def agreement_allows(self, agreement_id: str, agency: str, category: str, purpose: str, on: date) -> bool:
        """True when the agreement exists, is in force on `on` and covers the agency, category and purpose."""
        agreement = self.vocabulary.agreements.get(agreement_id)
        if agreement is None or not agreement.in_force(on) or agency not in agreement.parties:
            return False
        return any(self.purpose_within(purpose, p) for p in agreement.purposes) and any(
            self.category_within(category, c) for c in agreement.categories
        )

    # -- explanation and cross-checking (off the hot path) ----------------------------------------
    def request_problems(self, role: str, purpose: str, agency: str, category: str) -> tuple[tuple[str, str], ...]:
        """Why a request could never be made as written, as (field, message) pairs; empty if it can.

        Undeclared names, a group role or purpose (never asserted nor cited), a group category (no record
        belongs to it) and a category of another agency would all get a vacuous NONE from `decide`.
        """
        vocab = self.vocabulary
        found: list[tuple[str, str]] = []
        for kind, name, known in (
            ("role", role, vocab.roles),
            ("purpose", purpose, vocab.purposes),
            ("agency", agency, vocab.agencies),
            ("category", category, vocab.record_categories),
        ):
            if name not in known:
                found.append((kind, undeclared(kind, name, known)))
        if role in vocab.roles and vocab.roles[role].group:
            found.append(("role", f"{role!r} is a group of roles; no certificate asserts it, name one of its roles"))
        if purpose in vocab.purposes and vocab.purposes[purpose].group:
            found.append(
                ("purpose", f"{purpose!r} is a group of purposes; no request cites it, name one below it")
            )
        held = vocab.record_categories.get(category)
        if held is not None and held.group:
            found.append(
                ("category", f"{category!r} is a group of categories; no record belongs to it, name one below it")
            )
        if held is not None and agency in vocab.agencies and held.agency != agency:
            found.append(("category", f"category {category!r} is held by {held.agency}, not by {agency}"))
        return tuple(found)

    def matching_lines(self, role: str, purpose: str, agency: str, category: str) -> MatchingLines:
        """Every line that matches a cell, whatever its level, in file order."""
        roles = self.index.role_ancestors.get(role, frozenset()) | {ANY}
        purposes = self.index.purpose_ancestors.get(purpose, frozenset()) | {ANY}
        categories = self.index.category_ancestors.get(category, frozenset())
        found = [
            ln
            for ln in self.lines
            if ln.role in roles
            and ln.purpose in purposes
            and ln.category in categories
            and ln.agency == agency
        ]
        return MatchingLines(
            tuple(ln for ln in found if ln.effect is Effect.ALLOW),
            tuple(ln for ln in found if ln.effect is Effect.DENY),
            tuple(ln for ln in found if ln.effect is Effect.REVIEW),
        )

    def enforcer(self) -> casbin.Enforcer:
        """A real Casbin enforcer over this snapshot (built on first use; slow, for checks and tests)."""
        if not self._enforcer:
            vocab = self.vocabulary
            self._enforcer.append(
                build_enforcer(
                    self.model_text,
                    (ln.enforcer_row() for ln in self.lines),
                    [(n, p) for n, r in vocab.roles.items() for p in r.member_of],
                    [(n, p.parent) for n, p in vocab.purposes.items() if p.parent],
                    [(n, c.parent) for n, c in vocab.record_categories.items() if c.parent],
                )
            )
        return self._enforcer[0]

    def line_at(self, where: str) -> PolicyLine | None:
        for ln in self.lines:
            if ln.where == where:
                return ln
        return None


def _load_redaction(
    directory: Path, vocab: Vocabulary, findings: list[Finding], unreadable: list[Finding]
) -> RedactionRules | None:
    path = directory / REDACTION_FILE
    if not path.is_file():
        findings.append(Finding(REDACTION_FILE, 0, "file is missing"))
        unreadable.append(findings[-1])
        return None
    try:
        return load_rules(
            path,
            agencies=[a for a, v in vocab.agencies.items() if v.holds_records],
            field_categories=list(vocab.field_categories),
            record_categories=list(vocab.record_categories),
            protected={n: c.protected_readers for n, c in vocab.record_categories.items() if c.protected},
        )
    except PolicyError as exc:
        findings.extend(exc.findings or [Finding(REDACTION_FILE, 0, str(exc))])
        return None


class PolicyUnreadable(PolicyError):
    """A policy directory, or one of its files, is missing or cannot be parsed at all."""


class PolicyReadError(PolicyUnreadable):
    """A policy file vanished or changed while being read (a checkout writes files in steps); try again."""


def _read_failure(directory: Path, exc: OSError) -> PolicyReadError:
    name = Path(exc.filename).name if isinstance(exc.filename, str) else directory.name
    if isinstance(exc.filename, str):
        with contextlib.suppress(ValueError):
            name = Path(exc.filename).relative_to(directory).as_posix()
    reason = exc.strerror or exc.__class__.__name__
    return PolicyReadError(
        [Finding(name, 0, f"could not be read ({reason}); the files may be changing, load again")],
        f"cannot read the policy at {directory.name}",
    )


@contextlib.contextmanager
def read_consistently(directory: Path) -> Iterator[tuple[Path, str]]:
    """A private copy of every policy file, each read exactly once, and the version of those very bytes.

    Loading from the copy means the snapshot, its tests and its version always come from the same
    bytes, however the directory changes meanwhile. PolicyReadError if a file cannot be read.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyUnreadable([Finding(str(directory), 0, "policy directory not found")])
    try:
        files = read_tree(directory)
        holder = tempfile.TemporaryDirectory(prefix="policy-")
        root = Path(holder.name)
        for rel, data in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    except OSError as exc:
        raise _read_failure(directory, exc) from exc
    with holder:
        yield root, tree_hash(files)


def ensure_unchanged(directory: Path, version: str) -> None:
    """PolicyReadError unless `directory` still holds `version` (so a half-written checkout is not served)."""
    try:
        now = content_hash(directory)
    except OSError as exc:
        raise _read_failure(Path(directory), exc) from exc
    if now != version:
        raise PolicyReadError(
            [Finding(Path(directory).name, 0, "policy files changed while loading; load again")],
            f"the policy at {Path(directory).name} changed while loading",
        )


def load_snapshot(directory: Path) -> PolicySnapshot:
    """Load and validate a policy directory; raise PolicyError listing every problem as file:line.

    The error is a PolicyUnreadable when some file is missing or cannot be parsed at all, and more
    precisely a PolicyReadError when a file could not be read or changed while loading.
    """
    directory = Path(directory)
    with read_consistently(directory) as (copy, version):
        snapshot = load_copy(copy, version, directory)
    ensure_unchanged(directory, version)
    return snapshot


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a snapshot is built.

    A build allocates millions of tuples and dicts that all stay alive; each allocation burst made the
    collector walk the growing heap again, about half the build time at 20,000 lines. Nothing built here
    forms cycles that need collecting, and reference counting still frees everything else meanwhile.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def load_copy(copy: Path, version: str, directory: Path) -> PolicySnapshot:
    """Load the snapshot from a `read_consistently` copy; `directory` is where the files really live."""
    with _cyclic_gc_paused():
        vocab, lines, redaction, workflow, findings = _read_parts(copy, directory)
        errors = [f for f in findings if f.severity == "error"]
        if errors:
            raise PolicyError(errors, f"{len(errors)} problem(s) in the policy at {directory.name}")
        assert redaction is not None  # no errors means the redaction rules loaded
        return _assemble(copy, version, directory, vocab, lines, redaction, workflow)


@dataclass(frozen=True, slots=True)
class LoadedParts:
    """A snapshot of every part of a policy that loaded, and the findings about the parts that did not.

    With findings, the snapshot must never serve decisions: it exists so that `policy check` can report
    what the valid lines would do in the same run as a typo elsewhere.
    """

    snapshot: PolicySnapshot
    findings: tuple[Finding, ...]
    redaction_loaded: bool


def load_parts(copy: Path, version: str, directory: Path) -> LoadedParts:
    """Everything loadable from a `read_consistently` copy; PolicyUnreadable if a file cannot be parsed at all."""
    with _cyclic_gc_paused():
        vocab, lines, redaction, workflow, findings = _read_parts(copy, directory)
        snapshot = _assemble(copy, version, directory, vocab, lines, redaction or _NO_REDACTION, workflow)
    return LoadedParts(snapshot, tuple(findings), redaction is not None)


def _read_parts(
    copy: Path, directory: Path
) -> tuple[Vocabulary, list[PolicyLine], RedactionRules | None, WorkflowPolicy | None, list[Finding]]:
    findings: list[Finding] = check_model(copy)
    unreadable = [f for f in findings if f.line == 0]
    vocab = load_vocabulary(copy, findings, unreadable)
    lines = load_lines(copy, vocab, findings, unreadable)
    redaction = _load_redaction(copy, vocab, findings, unreadable)
    workflow = _load_workflow(copy, vocab, findings, unreadable)
    if unreadable:
        # Everything else found would only be an echo of the missing or unparsable files.
        raise PolicyUnreadable(unreadable, f"cannot read the policy at {directory.name}")
    return vocab, lines, redaction, workflow, findings


def _load_workflow(
    directory: Path, vocab: Vocabulary, findings: list[Finding], unreadable: list[Finding]
) -> WorkflowPolicy | None:
    """workflow.yaml, part of the policy: a broken one refuses the whole policy (and so the whole reload)."""
    try:
        workflow, problems = workflow_for(directory, vocab)
    except SourceError as exc:
        findings.append(exc.finding)
        unreadable.append(exc.finding)
        return None
    findings.extend(problems)
    return workflow


def _assemble(
    copy: Path,
    version: str,
    directory: Path,
    vocab: Vocabulary,
    lines: list[PolicyLine],
    redaction: RedactionRules,
    workflow: WorkflowPolicy | None = None,
) -> PolicySnapshot:
    return PolicySnapshot(
        version=version,
        directory=directory,
        vocabulary=vocab,
        lines=tuple(lines),
        index=build_index(vocab, lines),
        redaction=redaction,
        model_text=(copy / MODEL_FILE).read_text(encoding="utf-8"),
        workflow=workflow,
    )


# Stands in for redaction rules that failed to load, so the policy lines can still be checked.
_NO_REDACTION = RedactionRules(
    fields={},
    records={},
    contacts={},
    safeguarding=Safeguarding(frozenset(), "", {}, frozenset(), "", "", ""),
    source_name=REDACTION_FILE,
)
