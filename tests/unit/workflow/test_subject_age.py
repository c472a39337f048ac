"""A referral goes to the MASH for its subject's age: under 18 on the day it is submitted to the children's MASH,
18 or over to the adults'. A mismatch is bad input (named, not echoed, audited); no date of birth is recorded."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from test_referral_use_cases import NHS, POLICE, Rig, _submit, rig  # noqa: F401

from gateway.domain import AuditKind, SubjectIdentifiers
from gateway.errors import InvalidRequest
from gateway.workflow.referral import State
from gateway.workflow.store import QueueFilter
from gateway.workflow.validation import age_on, subject_kind_on

CHILD = SubjectIdentifiers(given_name="Kai", family_name="Mercer", date_of_birth="2017-03-14")
ADULT = SubjectIdentifiers(given_name="Edith", family_name="Okafor", date_of_birth="1941-05-02")


@pytest.mark.parametrize(("mash", "person"), [("adults", CHILD), ("children", ADULT)])
async def test_a_subject_of_the_other_mashs_age_is_refused_on_mash_without_echoing(
        rig: Rig, mash: str, person: SubjectIdentifiers) -> None:  # noqa: F811
    """A child submitted to the adults' MASH, or an adult to the children's: INVALID_ARGUMENT naming `mash`,
    audited as a refusal; neither the date of birth nor the name appears; nothing is stored or screened."""
    with pytest.raises(InvalidRequest) as caught:
        await rig.workflow.submit(POLICE, _submit(mash, subject=person, categories=("neglect",)))
    assert [v.field for v in caught.value.violations] == ["mash"]
    (entry,) = rig.sink.events
    assert (entry.kind, entry.status) == (AuditKind.REFUSAL, "INVALID_ARGUMENT")
    assert "mash:" in entry.reason
    for value in (person.date_of_birth, person.date_of_birth[:4], person.given_name, person.family_name):
        assert value not in str(caught.value)
        assert value not in repr(entry)
    assert rig.screening.asked == 0
    assert (await rig.store.queue(QueueFilter(), limit=10)).total == 0


@pytest.mark.parametrize(("born", "mash"), [
    ("2008-11-30", "adults"),    # 18 today
    ("2008-12-01", "children"),  # 18 tomorrow
])
async def test_the_eighteenth_birthday_is_the_day_a_subject_goes_to_the_adults_mash(
        rig: Rig, born: str, mash: str) -> None:  # noqa: F811
    """On Monday 30 November 2026 someone born on 30 November 2008 is an adult; one born a day later a child."""
    person = SubjectIdentifiers(given_name="Alex", family_name="Reed", date_of_birth=born)
    referral = await rig.workflow.submit(POLICE, _submit(mash, subject=person, categories=("neglect",)))
    assert referral.mash == mash
    other = "children" if mash == "adults" else "adults"
    with pytest.raises(InvalidRequest):
        await rig.workflow.submit(POLICE, _submit(other, subject=person, categories=("neglect",)))


async def test_the_submission_day_is_the_mashs_own_day(rig: Rig) -> None:  # noqa: F811
    """At 23:30 UTC on 30 June it is already 1 July in London (BST): someone born on 1 July 2008 is an adult."""
    rig.clock.current = datetime(2026, 6, 30, 23, 30, tzinfo=UTC)
    person = SubjectIdentifiers(given_name="Alex", family_name="Reed", date_of_birth="2008-07-01")
    assert (await rig.workflow.submit(POLICE, _submit("adults", subject=person,
                                                      categories=("neglect",)))).mash == "adults"
    with pytest.raises(InvalidRequest):
        await rig.workflow.submit(POLICE, _submit("children", subject=person, categories=("neglect",)))


@pytest.mark.parametrize("mash", ["children", "adults"])
async def test_without_a_date_of_birth_the_named_mash_stands_and_that_is_recorded(
        rig: Rig, mash: str) -> None:  # noqa: F811
    """An NHS number alone cannot be aged: the referral is taken in the MASH named, and its history and the
    audit entry say the age was not checked."""
    person = SubjectIdentifiers(nhs_number=NHS)
    referral = await rig.workflow.submit(POLICE, _submit(mash, subject=person, categories=("neglect",)))
    assert referral.state is State.SCREENED
    (submitted, *_) = await rig.store.history(referral.referral_id)
    assert submitted.reason == f"mash={mash}; subject_age=unchecked_no_date_of_birth"
    assert rig.sink.events[0].reason == submitted.reason
    aged = await rig.workflow.submit(POLICE, _submit("children", categories=("neglect",)))
    assert (await rig.store.history(aged.referral_id))[0].reason == "mash=children; subject_age=checked"


def test_age_counts_completed_years_and_a_leap_day_birthday_comes_on_the_first_of_march() -> None:
    assert age_on(date(2008, 2, 29), date(2026, 2, 28)) == 17
    assert age_on(date(2008, 2, 29), date(2026, 3, 1)) == 18
    assert age_on(date(2008, 2, 29), date(2028, 2, 29)) == 20
    assert subject_kind_on("2008-02-29", date(2026, 2, 28)) == "child"
    assert subject_kind_on("2008-02-29", date(2026, 3, 1)) == "adult"
    assert subject_kind_on("", date(2026, 3, 1)) is None
    assert subject_kind_on("not a date", date(2026, 3, 1)) is None
