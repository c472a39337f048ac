"""The auditor use cases: only certificates bound to the auditor role, every read of entries audited first,
and what an auditor searched for kept as declared names and keyed tokens, never as typed text."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from gateway.audit import AuditRecord, AuditReview, ConsistencyProof, EntryFilter, InclusionProof, VerifyReport
from gateway.audit.checkpoint import PublicKeys, SignedCheckpoint
from gateway.domain import SubjectIdentifiers
from gateway.errors import FieldViolation, InvalidRequest
from gateway.linkage import SubjectTokeniser
from gateway.service.access import AccessGuard
from gateway.service.ports import PolicySource
from gateway.service.validation import INVALID, UNDECLARED, Caller

AUDITOR_ROLE = "auditor"
MAX_SUBJECT_TOKENS = 64
_SUBJECT_TOKEN = re.compile(r"[a-z]{1,16}:[^:\s]{1,32}:[0-9a-f]{64}")
_STATUS = re.compile(r"[A-Z][A-Z_]{0,63}")
# The review layer names the proof sizes size1/size2; callers know them by their request field names.
_CONSISTENCY_FIELDS = {"size1": "first_tree_size", "size2": "second_tree_size"}


class AuditReads:
    """What an auditor certificate may read from the log, each read checked, refused or recorded in the log."""

    def __init__(self, review: AuditReview, guard: AccessGuard, tokeniser: SubjectTokeniser,
                 policy: PolicySource) -> None:
        self._review = review
        self._guard = guard
        self._tokeniser = tokeniser
        self._policy = policy

    async def list_entries(self, caller: Caller, read_filter: Callable[[], EntryFilter], *, limit: int | None,
                           start: int) -> AsyncIterator[AuditRecord]:
        """Entries matching the filter `read_filter` gives; it is read inside, so a filter it finds invalid
        (raising InvalidRequest) is refused and audited like any other."""
        await self._guard.require(caller, AUDITOR_ROLE, "ListEntries")
        async with self._guard.refusals.audited(caller, "ListEntries"):
            where = read_filter()
            _check_filter(where)
            await self._guard.record_access(caller, "ListEntries", subject_tokens=where.subject_tokens,
                                            details=self._searched_for(where))
            async for record in self._review.list_entries(where, limit=limit, start=start):
                yield record

    async def get_entry(self, caller: Caller, index: int) -> AuditRecord:
        await self._guard.require(caller, AUDITOR_ROLE, "GetEntry")
        await self._guard.record_access(caller, "GetEntry", details={"index": str(index)})
        return await self._guard.refusals.checked(caller, "GetEntry", self._review.get_entry(index))

    @property
    def keys(self) -> PublicKeys:
        """The log's checkpoint verification keys."""
        return self._review.keys

    async def latest_checkpoint(self, caller: Caller) -> tuple[SignedCheckpoint, tuple[str, ...]]:
        """The newest checkpoint and its stored cosignature lines."""
        await self._guard.require(caller, AUDITOR_ROLE, "GetLatestCheckpoint")
        checkpoint = await self._review.latest_checkpoint()
        return checkpoint, await self._review.cosignatures(checkpoint)

    async def checkpoint(self, caller: Caller, tree_size: int) -> tuple[SignedCheckpoint, tuple[str, ...]]:
        """The checkpoint of `tree_size` entries and its stored cosignature lines."""
        await self._guard.require(caller, AUDITOR_ROLE, "GetCheckpoint")
        checkpoint = await self._guard.refusals.checked(caller, "GetCheckpoint", self._review.checkpoint_at(tree_size))
        return checkpoint, await self._review.cosignatures(checkpoint)

    async def verifier_keys(self, caller: Caller) -> PublicKeys:
        await self._guard.require(caller, AUDITOR_ROLE, "GetVerifierKeys")
        return self._review.keys

    async def inclusion_proof(self, caller: Caller, index: int, tree_size: int | None) -> InclusionProof:
        await self._guard.require(caller, AUDITOR_ROLE, "GetInclusionProof")
        return await self._guard.refusals.checked(caller, "GetInclusionProof",
                                                  self._review.inclusion_proof(index, tree_size))

    async def consistency_proof(self, caller: Caller, first_tree_size: int,
                                second_tree_size: int | None) -> ConsistencyProof:
        await self._guard.require(caller, AUDITOR_ROLE, "GetConsistencyProof")
        return await self._guard.refusals.checked(caller, "GetConsistencyProof",
                                                  self._consistency_proof(first_tree_size, second_tree_size))

    async def _consistency_proof(self, first_tree_size: int, second_tree_size: int | None) -> ConsistencyProof:
        try:
            return await self._review.consistency_proof(first_tree_size, second_tree_size)
        except InvalidRequest as exc:
            raise _renamed(exc, _CONSISTENCY_FIELDS) from None

    async def verify(self, caller: Caller) -> VerifyReport:
        await self._guard.require(caller, AUDITOR_ROLE, "VerifyLog")
        return await self._review.verify()

    async def subject_access(self, caller: Caller, subject: SubjectIdentifiers) -> AsyncIterator[AuditRecord]:
        """Every entry about one person, found through their subject tokens under every key."""
        await self._guard.require(caller, AUDITOR_ROLE, "SubjectAccess")
        async with self._guard.refusals.audited(caller, "SubjectAccess"):
            tokens = self._tokeniser.all_tokens(subject)
            if not tokens:
                raise InvalidRequest([FieldViolation(
                    "subject", "give a valid NHS number, or given name, family name and date of birth")])
            await self._guard.record_access(caller, "SubjectAccess", subject_tokens=tokens)
            async for record in self._review.subject_access(tokens):
                yield record

    async def export(self, caller: Caller) -> AsyncIterator[bytes]:
        """The signed log as a tar bundle, in chunks; the export is recorded before the first chunk."""
        await self._guard.require(caller, AUDITOR_ROLE, "Export")
        await self._guard.record_access(caller, "Export")
        async for chunk in self._review.export_chunks():
            yield chunk

    def _searched_for(self, where: EntryFilter) -> dict[str, str]:
        """The filter as an audit entry may hold it: vocabulary names if declared, a marker otherwise, and
        keyed tokens for free text (a user id or case reference typed there may identify someone)."""
        policy = self._policy.current

        def declared(value: str, names: object) -> str:
            return value if value in names else UNDECLARED  # type: ignore[operator]

        found = {
            "agency": declared(where.agency, policy.agencies) if where.agency else "",
            "purpose": declared(where.purpose, policy.purposes) if where.purpose else "",
            "role": declared(where.role, policy.roles) if where.role else "",
            "user": self._tokeniser.text_token("user", where.user) if where.user else "",
            "case_reference": (self._tokeniser.text_token("case_reference", where.case_reference)
                               if where.case_reference else ""),
            "status": (where.status if _STATUS.fullmatch(where.status) else INVALID) if where.status else "",
            "kind": where.kind,
        }
        return {name: value for name, value in found.items() if value}


def _check_filter(where: EntryFilter) -> None:
    violations = []
    if where.since is not None and where.until is not None and where.since >= where.until:
        violations.append(FieldViolation("until", "must be later than since"))
    if len(where.subject_tokens) > MAX_SUBJECT_TOKENS:
        violations.append(FieldViolation("subject_tokens", f"at most {MAX_SUBJECT_TOKENS} tokens"))
    elif not all(_SUBJECT_TOKEN.fullmatch(t) for t in where.subject_tokens):
        violations.append(FieldViolation("subject_tokens", "each must be a subject token as the log shows it"))
    if violations:
        raise InvalidRequest(violations)


def _renamed(exc: InvalidRequest, names: dict[str, str]) -> InvalidRequest:
    def rename(text: str) -> str:
        for old, new in names.items():
            text = re.sub(rf"\b{old}\b", new, text)
        return text

    return InvalidRequest([replace(v, field=rename(v.field), description=rename(v.description))
                           for v in exc.violations])
