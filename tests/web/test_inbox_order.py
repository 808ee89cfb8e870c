"""The inbox order a veileder with many threads relies on: unread first, then those
waiting on her, then overdue; newest first within each."""

from __future__ import annotations

from typing import Any

from web.staff import inbox_order


def _thread(name: str, day: int, *, unread: int = 0, mine: bool = False, late: bool = False) -> Any:
    return {
        "id": name,
        "last_message_at": f"2026-11-{day:02d}T08:00:00Z",
        "unread": unread,
        "waiting_on_me": mine,
        "overdue": late,
    }


def test_unread_then_my_turn_then_overdue_newest_first_within_each() -> None:
    threads = [
        _thread("old and quiet", 1),
        _thread("unread, older", 2, unread=1),
        _thread("my turn, older", 3, mine=True),
        _thread("overdue", 4, late=True),
        _thread("unread, newer, my turn and late", 5, unread=2, mine=True, late=True),
        _thread("my turn, newer", 6, mine=True),
        _thread("quiet, newer", 7),
    ]
    assert [t["id"] for t in inbox_order(threads)] == [
        "unread, newer, my turn and late",
        "unread, older",
        "my turn, newer",
        "my turn, older",
        "overdue",
        "quiet, newer",
        "old and quiet",
    ]
