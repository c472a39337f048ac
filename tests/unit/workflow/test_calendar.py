"""Working-time deadlines: working hours, weekends, bank holidays, summer time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.workflow.calendar import CalendarError, WorkingCalendar

CAL = WorkingCalendar(bank_holidays=frozenset({date(2026, 12, 25), date(2026, 12, 28)}))
LONDON = ZoneInfo("Europe/London")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_hours_inside_one_working_day_are_added_directly() -> None:
    """Monday 10:00 plus 4 working hours is Monday 14:00."""
    assert CAL.add_working_hours(utc(2026, 11, 30, 10), 4) == utc(2026, 11, 30, 14)


def test_a_red_deadline_set_late_on_friday_runs_into_monday() -> None:
    """Friday 16:00 plus 4 working hours: one hour on Friday, three on Monday morning."""
    assert CAL.add_working_hours(utc(2026, 11, 27, 16), 4) == utc(2026, 11, 30, 12)


def test_bank_holidays_do_not_count() -> None:
    """Christmas Eve 15:00 plus 4 hours skips Christmas, the weekend and the substitute holiday."""
    assert CAL.add_working_hours(utc(2026, 12, 24, 15), 4) == utc(2026, 12, 29, 11)


def test_a_referral_rated_at_the_weekend_starts_counting_on_monday_morning() -> None:
    """Saturday evening plus 2 hours is Monday 11:00."""
    assert CAL.add_working_hours(utc(2026, 11, 28, 19), 2) == utc(2026, 11, 30, 11)


def test_an_amber_target_of_24_hours_is_three_working_days() -> None:
    """Monday 09:00 plus 24 working hours is Wednesday 17:00."""
    assert CAL.add_working_hours(utc(2026, 11, 30, 9), 24) == utc(2026, 12, 2, 17)


def test_working_hours_are_local_time_in_summer() -> None:
    """In British Summer Time 09:00 in London is 08:00 UTC, and the deadline says so."""
    assert CAL.add_working_hours(utc(2027, 6, 7, 7), 1) == utc(2027, 6, 7, 9)


def test_other_working_patterns_come_from_configuration() -> None:
    """A seven-day 08:00-20:00 service counts Saturday too."""
    weekend = WorkingCalendar(day_start=time(8), day_end=time(20), working_days=frozenset(range(7)))
    assert weekend.add_working_hours(utc(2026, 11, 28, 19), 2) == utc(2026, 11, 29, 9)


@pytest.mark.parametrize(("start", "hours"), [
    (datetime(2026, 11, 30, 9), 1.0),  # naive
    (datetime(2026, 11, 30, 9, tzinfo=UTC), -1.0),
])
def test_bad_arguments_are_refused(start: datetime, hours: float) -> None:
    """A naive start or negative hours raise CalendarError rather than guessing."""
    with pytest.raises(CalendarError):
        CAL.add_working_hours(start, hours)


@pytest.mark.parametrize("kwargs", [
    {"day_start": time(17), "day_end": time(9)},
    {"working_days": frozenset()},
])
def test_a_calendar_without_working_time_is_refused(kwargs: dict[str, object]) -> None:
    """Hours that end before they start, or no working day, cannot make a calendar."""
    with pytest.raises(CalendarError):
        WorkingCalendar(**kwargs)  # type: ignore[arg-type]


@given(
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 1), timezones=st.just(UTC)),
    minutes=st.integers(min_value=1, max_value=200 * 60),
)
def test_counting_back_the_working_time_gives_the_hours_added(start: datetime, minutes: int) -> None:
    """For any start and target, the working time between start and deadline is exactly the target."""
    due = CAL.add_working_hours(start, minutes / 60)
    assert due > start
    assert CAL.working_hours_between(start, due) == pytest.approx(minutes / 60, abs=1e-6)
    assert CAL.is_working_day(due.astimezone(LONDON).date())


def test_no_deadline_is_due_before_it_was_set() -> None:
    """Working hours between a later and an earlier instant are zero."""
    assert CAL.working_hours_between(utc(2026, 12, 1, 12), utc(2026, 12, 1, 10)) == 0.0
    assert CAL.working_hours_between(utc(2026, 12, 1, 8), utc(2026, 12, 1, 10) + timedelta(minutes=30)) == 1.5
