"""The auditor use cases: only certificates bound to the auditor role, every read of entries audited first,
and what an auditor searched for kept as declared names and keyed tokens, never as typed text."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, fields, replace

from gateway.audit import AuditRecord, AuditReview, ConsistencyProof, EntryFilter, InclusionProof, VerifyReport
from gateway.audit.answers import STATUSES, UnknownName, resolve_name
from gateway.audit.checkpoint import PublicKeys, SignedCheckpoint
from gateway.domain import SubjectIdentifiers
from gateway.errors import FieldViolation, InvalidRequest
from gateway.linkage import SubjectTokeniser
from gateway.service.access import AccessGuard, clip
from gateway.service.ports import PolicySource
from gateway.service.validation import INVALID, UNDECLARED, Caller

AUDITOR_ROLE = "auditor"
MAX_SUBJECT_TOKENS = 64
MAX_PAGE_SIZE = 1000
MAX_TOKEN = 256
MAX_HINT = 300
_MAX_INDEX = 2**63 - 1
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

    async def list_entries(self, caller: Caller, read_request: Callable[[], ListRequest]) -> AsyncIterator[Listed]:
        """Entries matching the request `read_request` gives, newest first unless asked otherwise, the first
        carrying the total and a page's last the next page's token. The request is read inside, so one found
        invalid (raising InvalidRequest), an undeclared name or a foreign page token included, is refused and
        audited like any other."""
        await self._guard.require(caller, AUDITOR_ROLE, "ListEntries")
        async with self._guard.refusals.audited(caller, "ListEntries"):
            request = read_request()
            where = self._declared(request.where)
            _check_filter(where)
            _check_paging(request)
            cursor = _read_token(request.page_token, where, request) if request.page_token else None
            details = self._searched_for(where)
            if not request.newest_first:
                details["order"] = "oldest_first"
            if cursor is not None:
                details["page_of"] = str(cursor.as_of)
            asked = await self._guard.record_access(caller, "ListEntries", subject_tokens=where.subject_tokens,
                                                    details=details)
        as_of = asked if cursor is None else cursor.as_of
        size = min(request.page_size, MAX_PAGE_SIZE) if request.page_size else request.limit or 0
        page = await read_page(
            self._review, where, as_of=as_of, newest_first=request.newest_first, size=size, start=request.start,
            after=cursor.boundary if cursor is not None and not request.newest_first else None,
            before=cursor.boundary if cursor is not None and request.newest_first else None,
            stream=not request.page_size)
        token = ""
        if request.page_size and page.more and page.records:
            token = _write_token(_Cursor(as_of=as_of, boundary=page.records[-1].index), where, request)
        first = True
        async for record, last in _with_last(page.stream()):
            yield Listed(record, page.total if first else None, token if last else "")
            first = False

    def _declared(self, where: EntryFilter) -> EntryFilter:
        """`where` with its agency, purpose, role and status as declared (matched case-insensitively);
        InvalidRequest naming the closest declared name for each that is not."""
        policy = self._policy.current
        resolved: dict[str, str] = {}
        violations = []
        for name, names in (("agency", policy.agencies), ("purpose", policy.purposes), ("role", policy.roles),
                            ("status", STATUSES)):
            try:
                resolved[name] = resolve_name(getattr(where, name), names, name)
            except UnknownName as exc:
                violations.append(FieldViolation(name, clip(exc.hint, MAX_HINT)))
        if violations:
            raise InvalidRequest(violations)
        return replace(where, agency=resolved["agency"], purpose=resolved["purpose"], role=resolved["role"],
                       status=resolved["status"])

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


@dataclass(frozen=True, slots=True)
class ListRequest:
    """One ListEntries request, transport-free: the filter (names as given), order, bounds and paging."""

    where: EntryFilter
    newest_first: bool = True
    start: int = 0  # lowest index considered (inclusive); it narrows the total too
    limit: int = 0  # at most this many entries without paging; 0: no limit
    page_size: int = 0  # 0: no paging
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class Listed:
    """One listed entry; the first of an answer carries the total, a page's last the next page's token."""

    record: AuditRecord
    total: int | None
    next_page_token: str


@dataclass(slots=True)
class EntryPage:
    """What one read of the log answers: the total matching as of index `as_of`, and the page's entries."""

    total: int
    as_of: int
    records: list[AuditRecord]
    more: bool  # more matching entries follow in this order
    rest: AsyncIterator[AuditRecord] | None = None  # unbuffered: the entries still to stream

    async def stream(self) -> AsyncIterator[AuditRecord]:
        for record in self.records:
            yield record
        if self.rest is not None:
            async for record in self.rest:
                yield record


async def read_page(review: AuditReview, where: EntryFilter, *, as_of: int, newest_first: bool = True,
                    size: int = 0, start: int = 0, after: int | None = None, before: int | None = None,
                    stream: bool = False) -> EntryPage:
    """The entries matching `where` as the log stood before entry `as_of` (normally the entry recording this
    read), newest first unless asked otherwise: at most `size` of them (0: all), with `start <= index`, past the
    cursor `after` (oldest first) or `before` (newest first). The total counts every matching entry from
    `start` up to `as_of`, whatever page is read, so every page of one listing reports the same total.

    The auditors' command line and AuditService.ListEntries both read the log through this, so they agree.
    With `stream`, entries are not buffered (`rest`), and `more` is not known.
    """
    total = await review.count(where, before=as_of)
    if start > 0:
        total -= await review.count(where, before=start)
    low = start if after is None else max(start, after + 1)
    high = as_of if before is None else min(as_of, before)
    if stream:
        return EntryPage(total, as_of, [], False, review.list_entries(where, limit=size or None, start=low,
                                                                      before=high, newest_first=newest_first))
    records = [r async for r in review.list_entries(where, limit=size + 1 if size else None, start=low,
                                                     before=high, newest_first=newest_first)]
    more = bool(size) and len(records) > size
    return EntryPage(total, as_of, records[:size] if more else records, more)


@dataclass(frozen=True, slots=True)
class _Cursor:
    as_of: int  # the index of the entry that recorded the first page's read
    boundary: int  # the last index the previous page sent


def _fingerprint(where: EntryFilter, request: ListRequest) -> str:
    """What a page token is bound to: the (declared) filter, order and start, so it only continues its own
    listing."""
    parts = [f"{f.name}={getattr(where, f.name)!r}" for f in fields(where) if f.name != "subject_tokens"]
    parts += [f"subject_tokens={sorted(where.subject_tokens)!r}", f"newest_first={request.newest_first}",
              f"start={request.start}"]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _write_token(cursor: _Cursor, where: EntryFilter, request: ListRequest) -> str:
    body = json.dumps({"v": 1, "a": cursor.as_of, "b": cursor.boundary, "f": _fingerprint(where, request)},
                      separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def _read_token(token: str, where: EntryFilter, request: ListRequest) -> _Cursor:
    """The cursor a page token holds; InvalidRequest if it is not one, or belongs to another listing."""
    try:
        if len(token) > MAX_TOKEN:
            raise ValueError("too long")
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = _Cursor(as_of=doc["a"], boundary=doc["b"])
        if doc.get("v") != 1 or not all(type(v) is int and 0 <= v <= _MAX_INDEX
                                        for v in (cursor.as_of, cursor.boundary)):
            raise ValueError("not a cursor")
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise InvalidRequest([FieldViolation("page_token", "not a page token ListEntries gave")]) from None
    if doc.get("f") != _fingerprint(where, request):
        raise InvalidRequest([FieldViolation(
            "page_token", "belongs to a listing with other filters, order or start_index; give the same ones")])
    return cursor


def _check_paging(request: ListRequest) -> None:
    if request.page_size and request.limit:
        raise InvalidRequest([FieldViolation("limit", "give page_size or limit, not both")])
    if request.page_token and not request.page_size:
        raise InvalidRequest([FieldViolation("page_size", "a page token needs a page size")])


async def _with_last(items: AsyncIterator[AuditRecord]) -> AsyncIterator[tuple[AuditRecord, bool]]:
    """Each item, and whether it is the last one."""
    previous: AuditRecord | None = None
    async for item in items:
        if previous is not None:
            yield previous, False
        previous = item
    if previous is not None:
        yield previous, True


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
