"""Referral store backends for the conformance suite, and a factory for referrals and their steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.domain import SubjectIdentifiers
from gateway.keyring import Keyring
from gateway.workflow.referral import Action, Content, Referral, State, Transition
from gateway.workflow.sealing import ContentSealer
from gateway.workflow.store import ReferralStore, open_referral_store

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
FAMILY_NAME = "Mercer-Quillfeather"
CONCERN = "Neighbour heard shouting and a child crying at 2am"
NHS_NUMBER = "9434765919"


@dataclass
class ReferralBackend:
    """A referral store under test: how to open (another handle on) it, and raw SQL for peeking at rest."""

    name: str
    url: str
    ring: Keyring
    sql: Any
    opened: list[ReferralStore] = field(default_factory=list)

    async def open(self, ring: Keyring | None = None) -> ReferralStore:
        store = await open_referral_store(self.url, ContentSealer(ring or self.ring))
        self.opened.append(store)
        return store


def make_referral(n: int, **overrides: Any) -> Referral:
    """Referral number `n`, received `n` minutes after T0; keyword arguments replace any field."""
    base: dict[str, Any] = {
        "referral_id": f"ref-{n:04d}", "mash": "children", "source_agency": "police", "referrer": "pc.1234",
        "received_at": T0 + timedelta(minutes=n),
        "content": Content(
            subject=SubjectIdentifiers(nhs_number=NHS_NUMBER, given_name="Kai", family_name=FAMILY_NAME,
                                       date_of_birth="2017-03-14"),
            household=(SubjectIdentifiers(given_name="Dana", family_name=FAMILY_NAME),),
            concern=CONCERN,
        ),
        "categories": ("domestic_abuse",), "borough": "north", "state": State.RECEIVED, "version": 1,
        "updated_at": T0 + timedelta(minutes=n),
    }
    base.update(overrides)
    return Referral(**base)


def step(referral: Referral, action: Action, to: State | None, *, at: datetime | None = None,
         reason: str = "") -> Transition:
    """The history entry for moving `referral` (already at its new version) by `action`."""
    return Transition(
        referral_id=referral.referral_id, action=action, from_state=to, to_state=referral.state,
        at=at or referral.updated_at or T0, actor="spiffe://mash.local/agency/hub/system/mash-console",
        user="mash.manager.1", role="mash_manager", reason=reason, version=referral.version,
    )
