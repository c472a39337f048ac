"""The locator's use cases: route a question to the nodes that hold its subject, and let nodes evaluate
blinded inputs and enrol or withdraw tokens, each call audited as counts.

The gateway holds the OPRF key. For a question it computes the subject's tokens itself (RFC 9497
Evaluate: it sees these identifiers anyway, because the caller sent them); for enrolment it sees only
blinded elements, so it never learns who a node holds. Routing fails open: if the index cannot be read,
every node is asked, as without a locator.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from gateway.domain import AuditEvent, AuditKind, Clock, SubjectIdentifiers
from gateway.errors import FieldViolation, GatewayError, InvalidRequest
from gateway.linkage import normalise_subject
from gateway.locator import oprf
from gateway.locator.inputs import TOKEN_BYTES, locator_inputs, token_from_output
from gateway.locator.keys import LocatorKeys
from gateway.locator.limits import EvaluationLimiter
from gateway.locator.store import Change, LocatorStore, LocatorStoreError, NodeEnrolment
from gateway.service.planning import Routing
from gateway.service.ports import AuditSink, PolicySource

log = structlog.get_logger("gateway.locator")

MAX_EVALUATE_BATCH = 1_000
MAX_TOKEN_BATCH = 10_000
_LISTED_VIOLATIONS = 5
_SAMPLES = 256  # recent lookup times kept per agency, to hold skipped answers as long as real ones take
# While no node has completed enrolment, routing cannot skip anyone: for this long after an index read said so,
# questions go to every node without computing tokens or reading the index again.
UNENROLLED_RECHECK = 1.0

FEATURE_LOCATOR_ENROLMENT = 2  # agency_service.proto Feature value


class UnknownLocatorKey(GatewayError):
    """A node named a key id the gateway does not hold (FAILED_PRECONDITION, naming the active key)."""

    def __init__(self, active_key_id: str) -> None:
        self.active_key_id = active_key_id
        super().__init__(f"the key id is not one the gateway holds; enrol under the active key {active_key_id!r}")


class NotEnrolling(GatewayError):
    """A node marked its enrolment complete without declaring FEATURE_LOCATOR_ENROLMENT in Describe."""

    def __init__(self) -> None:
        super().__init__("the node does not list FEATURE_LOCATOR_ENROLMENT in Describe, so its enrolment "
                         "cannot be complete; list the feature, then enrol again")


@dataclass(frozen=True, slots=True)
class Evaluation:
    key_id: str
    elements: tuple[bytes, ...]
    remaining: int


def _batch_violations(name: str, values: Sequence[bytes], size: int, limit: int, what: str) -> list[FieldViolation]:
    if len(values) > limit:
        return [FieldViolation(name, f"at most {limit} per call")]
    bad = [i for i, v in enumerate(values) if len(v) != size]
    out = [FieldViolation(f"{name}[{i}]", f"must be {what}") for i in bad[:_LISTED_VIOLATIONS]]
    if len(bad) > _LISTED_VIOLATIONS:
        out.append(FieldViolation(name, f"{len(bad) - _LISTED_VIOLATIONS} more must be {what}"))
    return out


class Locator:
    """Routing for questions, and the node-facing evaluation and enrolment (see LocatorService)."""

    def __init__(self, *, keys: LocatorKeys, store: LocatorStore, audit: AuditSink, policy: PolicySource,
                 clock: Clock, limiter: EvaluationLimiter | None = None,
                 features: Callable[[str], Awaitable[frozenset[int]]] | None = None,
                 hold_skipped: bool = True, unenrolled_recheck: float = UNENROLLED_RECHECK) -> None:
        self.keys = keys
        self._store = store
        self._audit = audit
        self._policy = policy
        self._clock = clock
        self.limiter = limiter or EvaluationLimiter()
        self._features = features
        self._hold_skipped = hold_skipped
        self._latencies: dict[str, deque[float]] = {}
        self._unenrolled_recheck = unenrolled_recheck
        self._unenrolled_until = 0.0  # monotonic time until which no node is taken to have completed enrolment

    # -- routing -----------------------------------------------------------------------------------------

    def tokens_for(self, subject: SubjectIdentifiers) -> dict[str, list[bytes]]:
        """The subject's tokens under every key id (what a node holding them would have enrolled)."""
        inputs = locator_inputs(normalise_subject(subject))
        return {kid: [token_from_output(oprf.evaluate(self.keys.secret(kid), data)) for _, data in inputs]
                for kid in self.keys.key_ids}

    async def route(self, subject: SubjectIdentifiers) -> Routing | None:
        """Which agencies to ask about `subject`; None (ask everyone) if it has no usable identifier, the
        index cannot be read, or no node has completed enrolment (then the next questions, for
        `unenrolled_recheck` seconds or until a node completes enrolment here, skip the tokens and the read;
        a node completing enrolment through another gateway process is taken in after at most that long)."""
        if time.monotonic() < self._unenrolled_until:
            return None
        by_key = self.tokens_for(subject)
        if not any(by_key.values()):
            return None
        enrolled: set[str] = set()
        matched: set[str] = set()
        try:
            for kid, tokens in by_key.items():
                found = await self._store.lookup(kid, tokens)
                enrolled |= found.complete
                matched |= found.matched
        except LocatorStoreError as exc:
            log.warning("locator index unreadable; asking every node", cause=type(exc.__cause__).__name__)
            return None
        if not enrolled:
            # Nobody can be skipped, whatever matched: the same plans as asking everyone.
            self._unenrolled_until = time.monotonic() + self._unenrolled_recheck
            return None
        hold = {a: self._hold(a) for a in enrolled - matched} if self._hold_skipped else {}
        return Routing(frozenset(enrolled), frozenset(matched), hold)

    def observe(self, agency: str, seconds: float) -> None:
        """Record how long a lookup at `agency` took (for holding skipped answers as long)."""
        self._latencies.setdefault(agency, deque(maxlen=_SAMPLES)).append(seconds)

    def _hold(self, agency: str) -> float:
        # The median of the node's recent lookup times: a skipped answer takes as long as a typical real one
        # (a random sample would often draw a slow outlier, and a query waits for its slowest agency).
        # An agency that is rarely asked borrows another agency's times, so even its first skips are not instant.
        samples = self._latencies.get(agency) or next((d for d in self._latencies.values() if d), None)
        return statistics.median(samples) if samples else 0.0

    # -- nodes -------------------------------------------------------------------------------------------

    async def _record(self, node_identity: str, rpc: str, **details: str) -> None:
        await self._audit.append([AuditEvent(
            kind=AuditKind.LOCATOR, occurred_at=self._clock.now(), caller=node_identity, status="OK",
            policy_version=self._policy.current.version, details={"rpc": rpc, **details},
        )])

    def _check_key(self, key_id: str) -> None:
        if key_id not in self.keys:
            raise UnknownLocatorKey(self.keys.active_id)

    async def evaluate(self, node: str, node_identity: str, elements: Sequence[bytes]) -> Evaluation:
        """Evaluate blinded elements with the active key; refuses bad elements before spending any limit."""
        violations = _batch_violations("blinded_elements", elements, oprf.ELEMENT_BYTES, MAX_EVALUATE_BATCH,
                                       "a 32-byte ristretto255 element")
        if not elements:
            violations.append(FieldViolation("blinded_elements", "must list at least one element"))
        if violations:
            raise InvalidRequest(violations)
        self.limiter.take(node, len(elements))
        secret = self.keys.secret(self.keys.active_id)
        out: list[bytes] = []
        invalid: list[int] = []
        for i, element in enumerate(elements):
            try:
                out.append(oprf.blind_evaluate(secret, element))
            except oprf.OprfError:
                invalid.append(i)
        if invalid:
            raise InvalidRequest([FieldViolation(f"blinded_elements[{i}]", "is not a valid non-identity "
                                                 "ristretto255 element") for i in invalid[:_LISTED_VIOLATIONS]])
        await self._record(node_identity, "Evaluate", elements=str(len(out)), key_id=self.keys.active_id)
        return Evaluation(self.keys.active_id, tuple(out), self.limiter.remaining(node))

    def _token_violations(self, key_id: str, tokens: Sequence[bytes]) -> list[FieldViolation]:
        violations = _batch_violations("tokens", tokens, TOKEN_BYTES, MAX_TOKEN_BATCH, f"{TOKEN_BYTES} bytes")
        if not key_id:
            violations.insert(0, FieldViolation("key_id", "is required"))
        elif len(key_id) > 64 or not key_id.isascii() or not key_id.isprintable():
            violations.insert(0, FieldViolation("key_id", "must be at most 64 printable ASCII characters"))
        return violations

    async def enrol(self, node: str, node_identity: str, key_id: str, tokens: Sequence[bytes],
                    complete: bool | None) -> Change:
        if violations := self._token_violations(key_id, tokens):
            raise InvalidRequest(violations)
        self._check_key(key_id)
        if complete and self._features is not None and FEATURE_LOCATOR_ENROLMENT not in await self._features(node):
            raise NotEnrolling
        change = await self._store.enrol(node, key_id, tokens, complete=complete, now=self._clock.now())
        if change.complete:
            self._unenrolled_until = 0.0  # route by the index again from the next question
        await self._record(node_identity, "Enrol", key_id=key_id, sent=str(len(tokens)), added=str(change.changed),
                           enrolled=str(change.total), complete=str(change.complete).lower())
        return change

    async def withdraw(self, node: str, node_identity: str, key_id: str, tokens: Sequence[bytes],
                       everything: bool) -> Change:
        violations = self._token_violations(key_id, tokens)
        if everything and tokens:
            violations.append(FieldViolation("tokens", "must be empty when all is set"))
        if violations:
            raise InvalidRequest(violations)
        self._check_key(key_id)
        change = await self._store.withdraw(node, key_id, tokens, everything=everything, now=self._clock.now())
        await self._record(node_identity, "Withdraw", key_id=key_id, sent=str(len(tokens)),
                           all=str(everything).lower(), removed=str(change.changed), enrolled=str(change.total))
        return change

    async def state(self, node: str) -> tuple[NodeEnrolment, int]:
        return await self._store.state(node), self.limiter.remaining(node)
