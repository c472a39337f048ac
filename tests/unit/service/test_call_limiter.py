"""Per-caller rate and concurrency limits, and how often their refusals are audited."""

from __future__ import annotations

import contextlib

from gateway.service.limits import CallLimiter, Limits
from gateway.service.validation import Caller

A = Caller("spiffe://mash.local/agency/csc/system/case-system", "csc", "sw.1", "social_worker")
A2 = Caller(A.identity, "csc", "sw.2", "social_worker")
B = Caller("spiffe://mash.local/agency/police/system/case-system", "police", "pc.1", "police_officer")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def outcome(limiter: CallLimiter, caller: Caller) -> str:
    with limiter.hold(caller) as refusal:
        return "ok" if refusal is None else refusal.error.code


def test_a_burst_above_the_rate_is_refused_with_a_retry_delay_and_refills_with_time() -> None:
    """Three calls in a burst of two at one call a second: the third is RATE_LIMITED with a retry hint of
    about a second, and after that second a call is allowed again."""
    clock = Clock()
    limiter = CallLimiter(Limits(identity_rate=1.0, identity_burst=2), clock=clock)
    assert [outcome(limiter, A) for _ in range(2)] == ["ok", "ok"]
    with limiter.hold(A) as refusal:
        assert refusal is not None
        assert refusal.error.code == "RATE_LIMITED"
        assert 0.9 < refusal.error.retry_after <= 1.0
    clock.now = 1.0
    assert outcome(limiter, A) == "ok"


def test_limits_are_per_caller_so_one_flooding_caller_does_not_starve_another() -> None:
    """One certificate over its rate does not limit another certificate."""
    limiter = CallLimiter(Limits(identity_rate=1.0, identity_burst=1), clock=Clock())
    assert [outcome(limiter, A), outcome(limiter, A)] == ["ok", "RATE_LIMITED"]
    assert outcome(limiter, B) == "ok"


def test_a_user_limit_holds_one_practitioner_back_without_holding_back_colleagues() -> None:
    """Two users behind one case system each get their own user budget."""
    limiter = CallLimiter(Limits(user_rate=1.0, user_burst=1), clock=Clock())
    assert [outcome(limiter, A), outcome(limiter, A)] == ["ok", "RATE_LIMITED"]
    assert outcome(limiter, A2) == "ok"


def test_calls_in_flight_past_the_concurrency_limit_are_refused_until_one_ends() -> None:
    """With two calls in flight allowed, a third waits for neither: it is CONCURRENCY_LIMITED; once one
    call ends the next is allowed."""
    limiter = CallLimiter(Limits(identity_concurrency=2), clock=Clock())
    with contextlib.ExitStack() as calls:
        assert calls.enter_context(limiter.hold(A)) is None
        second = contextlib.ExitStack()
        assert second.enter_context(limiter.hold(A)) is None
        assert outcome(limiter, A) == "CONCURRENCY_LIMITED"
        second.close()
        assert outcome(limiter, A) == "ok"


def test_a_refused_call_does_not_use_up_the_callers_budget() -> None:
    """Calls refused by one user's limit spend nothing from the certificate's budget, so colleagues behind
    the same certificate still get all of it."""
    limiter = CallLimiter(Limits(identity_rate=1.0, identity_burst=3, user_rate=1.0, user_burst=1), clock=Clock())
    assert [outcome(limiter, A) for _ in range(3)] == ["ok", "RATE_LIMITED", "RATE_LIMITED"]
    colleagues = [Caller(A.identity, "csc", f"sw.{i}", "social_worker") for i in range(2, 5)]
    assert [outcome(limiter, c) for c in colleagues] == ["ok", "ok", "RATE_LIMITED"]


def test_a_flood_of_refusals_is_audited_once_per_window_with_the_count() -> None:
    """A thousand refused calls in one window ask for one audit entry; the first refusal of the next window
    asks for another, counting every refusal since the last entry."""
    clock = Clock()
    limiter = CallLimiter(Limits(identity_rate=0.001, identity_burst=1, audit_window=60.0), clock=clock)
    assert outcome(limiter, A) == "ok"
    audited = []
    for _ in range(1000):
        with limiter.hold(A) as refusal:
            assert refusal is not None
            if refusal.audit:
                audited.append(refusal.refused_since_last_entry)
    assert audited == [1]
    clock.now = 61.0
    with limiter.hold(A) as refusal:
        assert refusal is not None
        assert refusal.audit
        assert refusal.refused_since_last_entry == 1000


def test_no_limits_configured_means_every_call_is_allowed() -> None:
    """The default settings limit nothing."""
    limiter = CallLimiter(Limits(), clock=Clock())
    assert not limiter.enabled
    assert {outcome(limiter, A) for _ in range(1000)} == {"ok"}
