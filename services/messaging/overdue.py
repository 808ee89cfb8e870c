"""Threads left unanswered: after a number of working days the recipient unit's inbox is
told, by a `thread.overdue` event in the outbox, once per unanswered message."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.messaging import store
from services.messaging.service import event, now_utc
from services.messaging.workdays import WorkingCalendar

log = logging.getLogger("broen.messaging.overdue")


async def report_overdue(
    session: AsyncSession,
    calendar: WorkingCalendar,
    *,
    working_days: int,
    now: datetime,
    batch: int = 500,
) -> int:
    """Report each open thread that has waited on its recipient `working_days` working days
    since the initiator's last message; returns how many were reported."""
    reported = 0
    # N working days are at least N calendar days: the query narrows, the calendar decides.
    for thread in await store.waiting_on_recipients(
        session, sent_by=now - timedelta(days=working_days), limit=batch
    ):
        if calendar.after(thread.last_message_at, working_days) > now:
            continue
        thread.overdue_notified_at = now
        await event(
            session,
            "thread.overdue",
            thread,
            recipient_orgnr=thread.recipient_orgnr,
            recipient_unit_id=str(thread.recipient_unit_id),
            recipient_inbox_handle=thread.recipient_inbox_handle,
            recipient_role=thread.recipient_role,
            waiting_since=thread.last_message_at.isoformat(),
        )
        reported += 1
    await session.flush()
    return reported


class OverdueWatch:
    """Runs `report_overdue` every `interval_seconds` while the service runs."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        calendar: WorkingCalendar,
        *,
        working_days: int,
        interval_seconds: float,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._calendar = calendar
        self._working_days = working_days
        self._interval = interval_seconds
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> int:
        async with self._sessionmaker.begin() as session:
            return await report_overdue(
                session, self._calendar, working_days=self._working_days, now=now_utc()
            )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval)
            if self._stop.is_set():
                return
            try:
                reported = await self.check()
            except Exception as error:  # the next round tries again
                log.warning("overdue check failed", extra={"error_type": type(error).__name__})
                continue
            if reported:
                log.info("overdue threads reported", extra={"count": reported})

    async def aclose(self) -> None:
        """Stops between checks, never in the middle of one."""
        self._stop.set()
        if self._task is not None:
            await self._task
