"""Threads and messages: opening, replying, reading, and following the recipient slot.

The gateway has decided, before it calls, that the caller may message about the
participant and that a basis covers the crossing; this service keeps the threads, seals
their text with the participant's data key, works out which side a caller is on from the
assignments (read from the participant service), and records handovers when the holder
of a thread's recipient slot changed."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NoReturn

from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging import store
from services.messaging.clients import Assignments, slot_of
from services.messaging.errors import (
    MessageToYourself,
    NotAnOrganisation,
    ThreadClosed,
    ThreadNotFound,
)
from services.messaging.models import Handover, Message, OutboxEvent, ParticipantKey, Thread
from services.messaging.schemas import Handover as HandoverRead
from services.messaging.schemas import (
    MessagePost,
    MessageRead,
    Party,
    Side,
    ThreadOpen,
    ThreadRead,
)
from services.participant.schemas import Holder, Slot
from shared.crypto import DecryptionFailed, Keyring
from shared.data_keys import open_text, participant_data_key, seal_text, unwrap_keys
from shared.events import make_event
from shared.internal_auth import CallerContext
from shared.outbox import record_event
from shared.vocabulary import UNIT_INBOX_ROLES

EVENT_SOURCE = "/broen/messaging"
# Shown instead of text whose participant's data key was destroyed (crypto-shredded).
SHREDDED = ""


def now_utc() -> datetime:
    return datetime.now(UTC)


def other(side: Side) -> Side:
    return "recipient" if side == "initiator" else "initiator"


async def event(session: AsyncSession, type: str, thread: Thread, **data: Any) -> None:
    """A domain event in the current transaction: ids and codes only, never text."""
    await record_event(
        session,
        OutboxEvent,
        make_event(
            EVENT_SOURCE,
            type,
            subject=str(thread.participant_id),
            data={
                "thread_id": str(thread.id),
                "participant_id": str(thread.participant_id),
                # The sides: only their organisations are told of the thread.
                "initiator_orgnr": thread.initiator_orgnr,
                "recipient_orgnr": thread.recipient_orgnr,
                **data,
            },
        ),
    )


def _organisation(caller: CallerContext) -> str:
    if caller.kind not in ("system", "staff") or not caller.orgnr:
        raise NotAnOrganisation()
    return caller.orgnr


def _staff_id(caller: CallerContext) -> uuid.UUID | None:
    return uuid.UUID(caller.staff_id) if caller.kind == "staff" and caller.staff_id else None


def _unit_id(caller: CallerContext) -> uuid.UUID | None:
    return uuid.UUID(caller.unit_id) if caller.unit_id else None


# --- opening and writing -------------------------------------------------------------------


async def open_thread(
    session: AsyncSession, keyring: Keyring, caller: CallerContext, data: ThreadOpen
) -> ThreadRead:
    orgnr = _organisation(caller)
    staff_id = _staff_id(caller)
    recipient = data.recipient
    if staff_id is not None and recipient.staff_id == staff_id:
        raise MessageToYourself()
    key = await participant_data_key(session, keyring, ParticipantKey, data.participant_id)
    now = now_utc()
    thread_id = uuid.uuid4()
    thread = Thread(
        id=thread_id,
        participant_id=data.participant_id,
        purpose=data.purpose,
        subject_sealed=seal_text(key, "threads", "subject", thread_id, data.subject),
        initiator_orgnr=orgnr,
        initiator_agency_type=caller.agency_type or "",
        initiator_role=data.initiator_role,
        initiator_unit_id=_unit_id(caller) if staff_id else None,
        initiator_staff_id=staff_id,
        recipient_orgnr=recipient.orgnr,
        recipient_agency_type=recipient.agency_type,
        recipient_role=recipient.role,
        recipient_unit_id=recipient.unit_id,
        recipient_staff_id=recipient.staff_id,
        recipient_staff_name=recipient.staff_name,
        recipient_inbox_handle=recipient.inbox_handle,
        recipient_routing_handle=recipient.routing_handle,
        protection=data.protection,
        created_at=now,
        last_message_at=now,
        last_message_side="initiator",
        message_count=0,
        initiator_unread=0,
        recipient_unread=0,
        initiator_read_at=None,
        recipient_read_at=None,
        overdue_notified_at=None,
        closed_at=None,
        closed_by=None,
    )
    await store.add(session, thread)
    await event(
        session,
        "thread.opened",
        thread,
        purpose=data.purpose,
        recipient_role=recipient.role,
        recipient_unit_id=str(recipient.unit_id),
    )
    await _add_message(session, key, thread, "initiator", caller, data.body, now)
    return _view(thread, "initiator", key, [])


async def post_message(
    session: AsyncSession,
    keyring: Keyring,
    assignments: Assignments,
    caller: CallerContext,
    thread_id: uuid.UUID,
    data: MessagePost,
) -> MessageRead:
    thread, side = await _side_of(session, assignments, caller, thread_id, for_update=True)
    if thread.closed_at is not None:
        raise ThreadClosed()
    key = await participant_data_key(session, keyring, ParticipantKey, thread.participant_id)
    message = await _add_message(session, key, thread, side, caller, data.body, now_utc())
    return _message_view(thread, message, key)


async def _add_message(
    session: AsyncSession,
    key: bytes,
    thread: Thread,
    side: Side,
    caller: CallerContext,
    body: str,
    now: datetime,
) -> Message:
    message_id = uuid.uuid4()
    staff_id = _staff_id(caller)
    message = Message(
        id=message_id,
        thread_id=thread.id,
        participant_id=thread.participant_id,
        side=side,
        sender_orgnr=caller.orgnr or "",
        sender_unit_id=_unit_id(caller) if staff_id else None,
        sender_staff_id=staff_id,
        body_sealed=seal_text(key, "messages", "body", message_id, body),
        sent_at=now,
    )
    thread.message_count += 1
    thread.last_message_at = now
    thread.last_message_side = side
    # Writing in a thread is having read it; the other side has one more to read.
    if side == "initiator":
        thread.initiator_read_at, thread.initiator_unread = now, 0
        thread.recipient_unread += 1
    else:
        thread.recipient_read_at, thread.recipient_unread = now, 0
        thread.initiator_unread += 1
    await store.add(session, message)
    await event(session, "message.sent", thread, message_id=str(message_id), side=side)
    return message


async def mark_read(
    session: AsyncSession,
    keyring: Keyring,
    assignments: Assignments,
    caller: CallerContext,
    thread_id: uuid.UUID,
) -> ThreadRead:
    """A read receipt: every message the other side sent so far is read."""
    thread, side = await _side_of(session, assignments, caller, thread_id, for_update=True)
    now = now_utc()
    if side == "initiator":
        thread.initiator_read_at, thread.initiator_unread = now, 0
    else:
        thread.recipient_read_at, thread.recipient_unread = now, 0
    await session.flush()
    await event(session, "thread.read", thread, side=side)
    return await _full_view(session, keyring, thread, side)


async def close(
    session: AsyncSession,
    keyring: Keyring,
    assignments: Assignments,
    caller: CallerContext,
    thread_id: uuid.UUID,
) -> ThreadRead:
    """Close the thread for both sides; closing again changes nothing."""
    thread, side = await _side_of(session, assignments, caller, thread_id, for_update=True)
    if thread.closed_at is None:
        thread.closed_at, thread.closed_by = now_utc(), side
        await session.flush()
        await event(session, "thread.closed", thread, side=side)
    return await _full_view(session, keyring, thread, side)


# --- reading -------------------------------------------------------------------------------


async def read_thread(
    session: AsyncSession,
    keyring: Keyring,
    assignments: Assignments,
    caller: CallerContext,
    thread_id: uuid.UUID,
    *,
    current: bool = True,
) -> ThreadRead:
    """The thread as the caller's side sees it; `current`: with the recipient role's holder
    as it is now and the handovers (else as last seen, without them)."""
    thread, side = await _side_of(session, assignments, caller, thread_id, current_holder=current)
    if not current:
        keys = await _keys(session, keyring, [thread.participant_id])
        return _view(thread, side, keys.get(thread.participant_id), [])
    return await _full_view(session, keyring, thread, side)


async def read_messages(
    session: AsyncSession,
    keyring: Keyring,
    assignments: Assignments,
    caller: CallerContext,
    thread_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[MessageRead]:
    thread, _ = await _side_of(session, assignments, caller, thread_id)
    keys = await _keys(session, keyring, [thread.participant_id])
    found = await store.messages(session, thread.id, after=after, limit=limit)
    key = keys.get(thread.participant_id)
    return [_message_view(thread, message, key) for message in found]


async def inbox(
    session: AsyncSession,
    keyring: Keyring,
    assignments: Assignments,
    caller: CallerContext,
    *,
    participant_id: uuid.UUID | None,
    unread: bool,
    waiting_on_me: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ThreadRead]:
    """The caller's threads, latest activity first. Threads whose slot changed hands since
    they were last seen record the handover now."""
    reach, held = await _reach(assignments, caller)
    found = await store.inbox(
        session,
        reach,
        participant_id=participant_id,
        unread=unread,
        waiting_on_me=waiting_on_me,
        after=after,
        limit=limit,
    )
    keys = await _keys(session, keyring, {t.participant_id for t in found})
    views = []
    for thread in found:
        side = _side_in(thread, caller)
        if side == "recipient" and thread.recipient_role is not None:
            holder = held.get(_slot(thread))
            if holder is not None:
                await _follow(session, thread, holder)
        views.append(_view(thread, side, keys.get(thread.participant_id), []))
    return views


async def _reach(
    assignments: Assignments, caller: CallerContext
) -> tuple[store.Reach, dict[Slot, Holder]]:
    orgnr = _organisation(caller)
    staff_id = _staff_id(caller)
    if staff_id is None:
        return store.Reach(orgnr=orgnr), {}
    caseload = await assignments.caseload(staff_id)
    held = {slot_of(h): h for h in caseload.holders if h.role is not None}
    reach = store.Reach(
        initiator_staff_id=staff_id,
        slots=[(s.participant_id, s.orgnr, s.role) for s in held],
        inbox_unit_id=caseload.unit_id if caseload.inbox_roles else None,
    )
    return reach, held


def _side_in(thread: Thread, caller: CallerContext) -> Side:
    """The side of a thread the inbox query found for the caller."""
    staff_id = _staff_id(caller)
    if staff_id is None:
        return "initiator" if thread.initiator_orgnr == caller.orgnr else "recipient"
    return "initiator" if thread.initiator_staff_id == staff_id else "recipient"


async def _side_of(
    session: AsyncSession,
    assignments: Assignments,
    caller: CallerContext,
    thread_id: uuid.UUID,
    *,
    for_update: bool = False,
    current_holder: bool = False,
) -> tuple[Thread, Side]:
    """The thread and the caller's side of it; the 404 of an unknown thread for anyone who
    is not a side of it now. The recipient slot's holder is read from the assignments when
    the caller may be it (and, with `current_holder`, for the initiator too, to show who
    holds it now); a changed holder is recorded as a handover."""
    orgnr = _organisation(caller)
    thread = await store.get_thread(session, thread_id, for_update=for_update)
    if thread is None:
        raise ThreadNotFound()
    staff_id = _staff_id(caller)
    if staff_id is None:  # a system token acts as its organisation
        if thread.initiator_orgnr == orgnr:
            return thread, "initiator"
        if thread.recipient_orgnr == orgnr:
            return thread, "recipient"
        raise ThreadNotFound()
    initiator = thread.initiator_staff_id == staff_id
    if initiator and not current_holder:
        return thread, "initiator"
    if thread.recipient_role is not None:
        holder = (await assignments.holders([_slot(thread)])).get(_slot(thread))
        if holder is None:  # nobody holds the role now: the slot's side is nobody's
            return (thread, "initiator") if initiator else _not_found()
        await _follow(session, thread, holder)
    if initiator:
        return thread, "initiator"
    if thread.recipient_staff_id is not None:
        if thread.recipient_staff_id == staff_id:
            return thread, "recipient"
    elif (
        caller.unit_id is not None
        and str(thread.recipient_unit_id) == caller.unit_id
        and set(caller.roles) & set(UNIT_INBOX_ROLES)
    ):
        return thread, "recipient"
    raise ThreadNotFound()


def _not_found() -> NoReturn:
    raise ThreadNotFound()


def _slot(thread: Thread) -> Slot:
    assert thread.recipient_role is not None
    return Slot(
        participant_id=thread.participant_id,
        orgnr=thread.recipient_orgnr,
        role=thread.recipient_role,
    )


async def _follow(session: AsyncSession, thread: Thread, holder: Holder) -> None:
    """Record a handover if the slot's holder is not the one the thread last saw."""
    if (holder.staff_id, holder.unit_id) == (thread.recipient_staff_id, thread.recipient_unit_id):
        return
    now = now_utc()
    handover = Handover(
        id=uuid.uuid4(),
        thread_id=thread.id,
        from_staff_id=thread.recipient_staff_id,
        from_unit_id=thread.recipient_unit_id,
        to_staff_id=holder.staff_id,
        to_unit_id=holder.unit_id,
        at=holder.since or now,
        recorded_at=now,
    )
    thread.recipient_staff_id = holder.staff_id
    thread.recipient_unit_id = holder.unit_id
    thread.recipient_staff_name = holder.staff_name
    thread.recipient_inbox_handle = holder.inbox_handle
    thread.recipient_routing_handle = holder.routing_handle
    await store.add(session, handover)
    await event(
        session,
        "thread.handed_over",
        thread,
        from_unit_id=str(handover.from_unit_id),
        to_unit_id=str(handover.to_unit_id),
        from_staff_id=str(handover.from_staff_id) if handover.from_staff_id else None,
        to_staff_id=str(handover.to_staff_id) if handover.to_staff_id else None,
    )


# --- views ---------------------------------------------------------------------------------


async def _keys(
    session: AsyncSession, keyring: Keyring, participant_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, bytes]:
    return unwrap_keys(keyring, await store.participant_keys(session, participant_ids))


def _open(key: bytes | None, table: str, column: str, row_id: uuid.UUID, sealed: bytes) -> str:
    if key is None:
        return SHREDDED
    try:
        return open_text(key, table, column, row_id, sealed)
    except DecryptionFailed:
        return SHREDDED


async def _full_view(
    session: AsyncSession, keyring: Keyring, thread: Thread, side: Side
) -> ThreadRead:
    keys = await _keys(session, keyring, [thread.participant_id])
    handovers = await store.handovers(session, thread.id)
    return _view(thread, side, keys.get(thread.participant_id), handovers)


def _view(thread: Thread, side: Side, key: bytes | None, handovers: list[Handover]) -> ThreadRead:
    closed = thread.closed_at is not None
    waiting_on: Side | None = None if closed else other(thread.last_message_side)  # type: ignore[arg-type]
    return ThreadRead(
        id=thread.id,
        participant_id=thread.participant_id,
        purpose=thread.purpose,
        subject=_open(key, "threads", "subject", thread.id, thread.subject_sealed),
        me=side,
        initiator=Party(
            orgnr=thread.initiator_orgnr,
            agency_type=thread.initiator_agency_type,
            role=thread.initiator_role,
            unit_id=thread.initiator_unit_id,
            inbox_handle=None,
            routing_handle=None,
            staff_id=thread.initiator_staff_id,
            staff_name=None,
        ),
        recipient=Party(
            orgnr=thread.recipient_orgnr,
            agency_type=thread.recipient_agency_type,
            role=thread.recipient_role,
            unit_id=thread.recipient_unit_id,
            inbox_handle=thread.recipient_inbox_handle,
            routing_handle=thread.recipient_routing_handle,
            staff_id=thread.recipient_staff_id,
            staff_name=thread.recipient_staff_name,
        ),
        protection=thread.protection,
        created_at=thread.created_at,
        last_message_at=thread.last_message_at,
        message_count=thread.message_count,
        unread=thread.initiator_unread if side == "initiator" else thread.recipient_unread,
        waiting_on=waiting_on,
        overdue=(
            waiting_on == "recipient"
            and thread.overdue_notified_at is not None
            and thread.overdue_notified_at >= thread.last_message_at
        ),
        closed_at=thread.closed_at,
        handovers=[
            HandoverRead(
                from_staff_id=h.from_staff_id,
                from_unit_id=h.from_unit_id,
                to_staff_id=h.to_staff_id,
                to_unit_id=h.to_unit_id,
                at=h.at,
            )
            for h in handovers
        ],
    )


def _message_view(thread: Thread, message: Message, key: bytes | None) -> MessageRead:
    side: Side = message.side  # type: ignore[assignment]
    read_at = thread.recipient_read_at if side == "initiator" else thread.initiator_read_at
    return MessageRead(
        id=message.id,
        thread_id=message.thread_id,
        side=side,
        sender_orgnr=message.sender_orgnr,
        sender_staff_id=message.sender_staff_id,
        body=_open(key, "messages", "body", message.id, message.body_sealed),
        sent_at=message.sent_at,
        read_by_other_side=read_at is not None and read_at >= message.sent_at,
    )
