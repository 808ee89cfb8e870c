"""All SQL of the messaging service. Functions flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from services.messaging.models import Handover, Message, OutboxEvent, ParticipantKey, Thread
from shared.data_keys import delete_in_order
from shared.outbox import outbox_about


async def add(session: AsyncSession, *rows: object) -> None:
    session.add_all(rows)
    await session.flush()


async def get_thread(
    session: AsyncSession, thread_id: uuid.UUID, *, for_update: bool = False
) -> Thread | None:
    """The thread; `for_update` locks its row until the transaction ends, so concurrent
    writes to one thread (its counters, its last message) happen one after the other."""
    return await session.get(Thread, thread_id, with_for_update=for_update)


@dataclass(frozen=True)
class Reach:
    """The threads a caller is a side of: those it opened, and those whose recipient slot
    or unit inbox it holds now."""

    initiator_staff_id: uuid.UUID | None = None
    orgnr: str | None = None  # a system token: every thread of its organisation
    slots: Sequence[tuple[uuid.UUID, str, str]] = ()
    inbox_unit_id: uuid.UUID | None = None

    def condition(self) -> ColumnElement[bool]:
        if self.orgnr is not None:
            return or_(Thread.initiator_orgnr == self.orgnr, Thread.recipient_orgnr == self.orgnr)
        reached: list[ColumnElement[bool]] = []
        if self.initiator_staff_id is not None:
            reached.append(Thread.initiator_staff_id == self.initiator_staff_id)
        # A staff member's slots are a few (organisation, role) pairs over many participants:
        # one IN list per pair, which the slot index serves (a list of row values was
        # compiled anew and scanned every thread).
        by_pair: dict[tuple[str, str], list[uuid.UUID]] = {}
        for participant_id, orgnr, role in self.slots:
            by_pair.setdefault((orgnr, role), []).append(participant_id)
        for (orgnr, role), participant_ids in by_pair.items():
            reached.append(
                and_(
                    Thread.participant_id.in_(participant_ids),
                    Thread.recipient_orgnr == orgnr,
                    Thread.recipient_role == role,
                )
            )
        if self.inbox_unit_id is not None:
            reached.append(
                and_(
                    Thread.recipient_role.is_(None), Thread.recipient_unit_id == self.inbox_unit_id
                )
            )
        return or_(*reached) if reached else false()

    def initiates(self) -> ColumnElement[bool]:
        if self.orgnr is not None:
            return Thread.initiator_orgnr == self.orgnr
        if self.initiator_staff_id is not None:
            return Thread.initiator_staff_id == self.initiator_staff_id
        return false()


async def inbox(
    session: AsyncSession,
    reach: Reach,
    *,
    participant_id: uuid.UUID | None,
    unread: bool,
    waiting_on_me: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Thread]:
    """The caller's threads, latest activity first."""
    statement = select(Thread).where(reach.condition())
    if participant_id is not None:
        statement = statement.where(Thread.participant_id == participant_id)
    mine = reach.initiates()
    if unread:
        statement = statement.where(
            or_(
                and_(mine, Thread.initiator_unread > 0),
                and_(~mine, Thread.recipient_unread > 0),
            )
        )
    if waiting_on_me:
        statement = statement.where(
            Thread.closed_at.is_(None),
            or_(
                and_(mine, Thread.last_message_side == "recipient"),
                and_(~mine, Thread.last_message_side == "initiator"),
            ),
        )
    if after is not None:
        moment, thread_id = after
        statement = statement.where(
            or_(
                Thread.last_message_at < moment,
                and_(Thread.last_message_at == moment, Thread.id < thread_id),
            )
        )
    statement = statement.order_by(Thread.last_message_at.desc(), Thread.id.desc()).limit(limit)
    return list((await session.scalars(statement)).all())


async def messages(
    session: AsyncSession,
    thread_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Message]:
    """The thread's messages, oldest first."""
    statement = select(Message).where(Message.thread_id == thread_id)
    if after is not None:
        moment, message_id = after
        statement = statement.where(
            or_(Message.sent_at > moment, and_(Message.sent_at == moment, Message.id > message_id))
        )
    statement = statement.order_by(Message.sent_at, Message.id).limit(limit)
    return list((await session.scalars(statement)).all())


async def handovers(session: AsyncSession, thread_id: uuid.UUID) -> list[Handover]:
    statement = select(Handover).where(Handover.thread_id == thread_id).order_by(Handover.at)
    return list((await session.scalars(statement)).all())


async def participant_keys(
    session: AsyncSession, participant_ids: Iterable[uuid.UUID]
) -> list[ParticipantKey]:
    wanted = set(participant_ids)
    if not wanted:
        return []
    statement = select(ParticipantKey).where(ParticipantKey.participant_id.in_(wanted))
    return list((await session.scalars(statement)).all())


async def waiting_on_recipients(
    session: AsyncSession, *, sent_by: datetime, limit: int
) -> list[Thread]:
    """Open threads whose last message is the initiator's, sent by the moment, not yet
    reported overdue since that message."""
    statement = (
        select(Thread)
        .where(
            Thread.closed_at.is_(None),
            Thread.last_message_side == "initiator",
            Thread.last_message_at <= sent_by,
            or_(
                Thread.overdue_notified_at.is_(None),
                Thread.overdue_notified_at < Thread.last_message_at,
            ),
        )
        .order_by(Thread.last_message_at)
        .limit(limit)
        # Replicas checking at once take different threads (PostgreSQL; SQLite has one writer).
        .with_for_update(skip_locked=True)
    )
    return list((await session.scalars(statement)).all())


async def delete_participant_data(
    session: AsyncSession, participant_id: uuid.UUID
) -> dict[str, int]:
    """Delete the threads about the participant with their messages and handovers, their
    data key and the events about them still in the outbox; rows deleted per table."""
    threads = select(Thread.id).where(Thread.participant_id == participant_id)
    return await delete_in_order(
        session,
        delete(Handover).where(Handover.thread_id.in_(threads)),
        delete(Message).where(Message.thread_id.in_(threads)),
        delete(Thread).where(Thread.participant_id == participant_id),
        delete(ParticipantKey).where(ParticipantKey.participant_id == participant_id),
        outbox_about(OutboxEvent, participant_id),
    )
