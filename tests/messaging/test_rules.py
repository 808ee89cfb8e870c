"""The messaging service's own rules: what counts as a national id in a text, and what
counts as a working day."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from stdnum.no import fodselsnummer

from services.messaging.schemas import national_id_positions
from services.messaging.workdays import WorkingCalendar

OSLO = ZoneInfo("Europe/Oslo")
FNR = "15080551212"
# A D-nummer: the same person's number with 4 added to the first digit, new check digits.
D_NUMBER = next(
    n for n in (f"550805512{c:02d}" for c in range(100)) if fodselsnummer.is_valid(n)
)


@pytest.mark.parametrize(
    ("text", "positions"),
    [
        (f"fnr {FNR}.", [4]),
        (f"fnr {FNR[:6]} {FNR[6:]}", [4]),
        (f"D-nummer {D_NUMBER} og {FNR}", [9, 24]),
        (f"tlf 91234567, saksnr 2026{FNR[:7]}", []),  # inside a longer number
        ("kontonummer 12345678901", []),  # eleven digits, not a valid number
        ("Kari møtte ikke i dag.", []),
    ],
)
def test_national_ids_are_found_by_position(text: str, positions: list[int]) -> None:
    assert national_id_positions(text) == positions


def test_two_working_days_from_friday_afternoon_is_tuesday_afternoon() -> None:
    calendar = WorkingCalendar.of("NO", "Europe/Oslo")
    friday = datetime(2026, 11, 20, 14, 30, tzinfo=OSLO)
    assert calendar.after(friday, 2) == datetime(2026, 11, 24, 14, 30, tzinfo=OSLO)


def test_public_holidays_are_not_working_days() -> None:
    calendar = WorkingCalendar.of("NO", "Europe/Oslo")
    # Wednesday 23 December 2026: the 24th is a weekday but Christmas Day and Boxing Day
    # are holidays; the 24th counts, then Monday 28th.
    assert not calendar.is_working_day(date(2026, 12, 25))
    assert not calendar.is_working_day(date(2027, 5, 17))  # Grunnlovsdag
    wednesday = datetime(2026, 12, 23, 9, 0, tzinfo=OSLO)
    assert calendar.after(wednesday, 2) == datetime(2026, 12, 28, 9, 0, tzinfo=OSLO)
