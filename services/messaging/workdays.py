"""Working days: weekdays that are not public holidays, in the service's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import holidays


@dataclass(frozen=True)
class WorkingCalendar:
    zone: ZoneInfo
    public_holidays: holidays.HolidayBase

    @classmethod
    def of(cls, country: str, time_zone: str) -> WorkingCalendar:
        return cls(ZoneInfo(time_zone), holidays.country_holidays(country))

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.public_holidays

    def after(self, moment: datetime, working_days: int) -> datetime:
        """The same local time `working_days` working days after `moment` (a message sent
        on Friday afternoon with two working days is due on Tuesday afternoon)."""
        local = moment.astimezone(self.zone)
        day, counted = local.date(), 0
        while counted < working_days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return datetime.combine(day, local.time(), tzinfo=self.zone)
