"""The referral state machine: which action may be taken from which state, and where it leads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.domain import SubjectIdentifiers
from gateway.workflow.referral import Action, Content, InvalidTransition, Referral, State, next_state

R, S, RT, RS, D = State.RECEIVED, State.SCREENED, State.RATED, State.RESEARCHING, State.DECIDED
OPEN = [State.RECEIVED, State.SCREENED, State.ROUTED, State.RATED, State.RESEARCHING, State.DECIDED]

# Written out by hand from the MASH process, independently of the table in the code.
ALLOWED = {
    (R, Action.SCREEN): S, (R, Action.ROUTE): State.ROUTED, (S, Action.ROUTE): State.ROUTED,
    (S, Action.RATE): RT, (RT, Action.RATE): RT,
    (RT, Action.START_RESEARCH): RS, (RS, Action.RECORD_ANSWERS): RS, (RS, Action.COMPLETE_RESEARCH): RS,
    (RS, Action.DECIDE): D, (D, Action.CLOSE): State.CLOSED, (State.ROUTED, Action.CLOSE): State.CLOSED,
    **{(s, Action.RECORD_BREACH): s for s in (R, S, RT, RS)},
    **{(s, Action.WITHDRAW): State.WITHDRAWN for s in OPEN},
    **{(s, Action.MERGE): State.MERGED for s in OPEN},
}


def _referral(state: State, *, researched: bool = True) -> Referral:
    return Referral("ref-1", "children", "police", "pc.1", datetime(2026, 11, 26, tzinfo=UTC),
                    Content(SubjectIdentifiers(nhs_number="9434765919")), state=state,
                    research_completed_at=datetime(2026, 11, 26, tzinfo=UTC) if researched else None)


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("action", [a for a in Action if a is not Action.SUBMIT])
def test_every_action_from_every_state_follows_the_process(state: State, action: Action) -> None:
    """Allowed steps lead where the process says; every other one is refused naming the current state."""
    expected = ALLOWED.get((state, action))
    if expected is None:
        with pytest.raises(InvalidTransition) as caught:
            next_state(_referral(state), action)
        assert caught.value.current is state
        assert state.value in str(caught.value)
    else:
        assert next_state(_referral(state), action) is expected


def test_a_decision_needs_research_recorded_complete() -> None:
    """Deciding while research is still open is refused, naming the current state."""
    with pytest.raises(InvalidTransition) as caught:
        next_state(_referral(State.RESEARCHING, researched=False), Action.DECIDE)
    assert caught.value.current is State.RESEARCHING


def test_finished_referrals_accept_nothing() -> None:
    """Closed, withdrawn and merged are terminal."""
    for state in (State.CLOSED, State.WITHDRAWN, State.MERGED):
        assert state.terminal
        assert not any((state, a) in ALLOWED for a in Action)
