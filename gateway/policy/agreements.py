"""What a data-sharing agreement allows on a given day, in the words the gateway refuses a request with."""

from __future__ import annotations

from datetime import date

from gateway.policy.snapshot import PolicySnapshot


def agreement_refusal(snapshot: PolicySnapshot, agreement_id: str, *, requester: str, purpose: str, agency: str,
                      category: str, on: date) -> str:
    """Why a request under `agreement_id` on day `on` gets nothing from `agency` about `category`, or "" if the
    agreement allows it; the same order of checks as the gateway's, so an explanation reproduces a refusal."""
    agreement = snapshot.agreements.get(agreement_id)
    if agreement is None:
        return f"{agreement_id!r} is not a known data-sharing agreement"
    if on < agreement.valid_from:
        return f"agreement {agreement_id!r} is not in force until {agreement.valid_from.isoformat()}"
    if on > agreement.valid_until:
        return f"agreement {agreement_id!r} expired on {agreement.valid_until.isoformat()}"
    if not any(snapshot.purpose_within(purpose, p) for p in agreement.purposes):
        return f"agreement {agreement_id!r} does not cover purpose {purpose!r}"
    if requester not in agreement.parties:
        return f"requesting organisation {requester!r} is not a party to agreement {agreement_id!r}"
    if agency not in agreement.parties:
        return f"{agency!r} is not a party to agreement {agreement_id!r}, so it is not asked"
    if crossing := snapshot.area_refusal(agreement_id, requester, agency):
        return f"{crossing}, so it is not asked"
    if not any(snapshot.category_within(category, c) for c in agreement.categories):
        return f"agreement {agreement_id!r} does not cover category {category!r}"
    return ""
