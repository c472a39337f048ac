"""Working-time arithmetic for referral deadlines: working days and hours in a local time zone, minus bank holidays."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MAX_DAYS = 3 * 366  # no sane target spans more than a few years of working time; stop rather than loop


class CalendarError(ValueError):
    """A deadline cannot be computed (e.g. no working time at all in the calendar)."""


@dataclass(frozen=True, slots=True)
class WorkingCalendar:
    """When a MASH works: a time zone, daily working hours, working weekdays and bank holidays."""

    timezone: str = "Europe/London"
    day_start: time = time(9, 0)
    day_end: time = time(17, 0)
    working_days: frozenset[int] = frozenset(range(5))  # Monday = 0
    bank_holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # raises for an unknown zone
        if self.day_end <= self.day_start:
            raise CalendarError("working hours must end after they start")
        if not self.working_days:
            raise CalendarError("at least one working day is needed")

    @classmethod
    def of(cls, *, timezone: str, start: time, end: time, days: Collection[str],
           holidays: Collection[date]) -> WorkingCalendar:
        return cls(timezone, start, end, frozenset(WEEKDAYS.index(d) for d in days), frozenset(holidays))

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.working_days and day not in self.bank_holidays

    def _window(self, day: date) -> tuple[datetime, datetime]:
        zone = ZoneInfo(self.timezone)
        return (datetime.combine(day, self.day_start, zone).astimezone(UTC),
                datetime.combine(day, self.day_end, zone).astimezone(UTC))

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """The instant `hours` of working time after `start` (an aware datetime); the answer is UTC.

        Time outside working hours, at weekends and on bank holidays does not count, so a Red referral
        rated on Friday at 16:00 with a 4-hour target is due on Monday at 12:00.
        """
        if start.tzinfo is None:
            raise CalendarError("start must be timezone-aware")
        if hours < 0:
            raise CalendarError("hours must not be negative")
        remaining = timedelta(hours=hours)
        cursor = start.astimezone(UTC)
        day = cursor.astimezone(ZoneInfo(self.timezone)).date()
        for _ in range(_MAX_DAYS * 7):
            if self.is_working_day(day):
                opens, closes = self._window(day)
                begin = max(cursor, opens)
                if begin < closes:
                    available = closes - begin
                    if remaining <= available:
                        return begin + remaining
                    remaining -= available
            day += timedelta(days=1)
        raise CalendarError("no deadline within the calendar's horizon")

    def working_hours_between(self, start: datetime, end: datetime) -> float:
        """Working hours from `start` to `end` (0 when end is not after start)."""
        if end <= start:
            return 0.0
        total = timedelta()
        day = start.astimezone(ZoneInfo(self.timezone)).date()
        last = end.astimezone(ZoneInfo(self.timezone)).date()
        while day <= last:
            if self.is_working_day(day):
                opens, closes = self._window(day)
                begin, finish = max(start, opens), min(end, closes)
                if finish > begin:
                    total += finish - begin
            day += timedelta(days=1)
        return total.total_seconds() / 3600
