"""All SQL of the event log, subscriptions and webhook deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import EventRecord, Subscription, WebhookDelivery

# Taken by every transaction that appends to the log on PostgreSQL: sequence numbers are
# then committed in order, so a reader after seq N never misses one committed later.
EVENT_LOG_LOCK = 0x62726F656E  # "broen"


def _is_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def append(
    session: AsyncSession, envelopes: Sequence[dict[str, Any]], *, now: datetime
) -> None:
    """Append the events the log does not hold yet (by id), in order."""
    if not envelopes:
        return
    postgres = _is_postgresql(session)
    if postgres:
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENT_LOG_LOCK})
    dialect = postgresql if postgres else sqlite
    statement = dialect.insert(EventRecord).on_conflict_do_nothing(index_elements=["event_id"])
    # Multi-row VALUES, numbered in the order given.
    rows = [
        {"event_id": e["id"], "type": e["type"], "envelope": e, "received_at": now}
        for e in dict((e["id"], e) for e in envelopes).values()
    ]
    await session.execute(statement, rows)


async def events_after(
    session: AsyncSession, seq: int, *, limit: int, types: Sequence[str] | None = None
) -> list[EventRecord]:
    statement = select(EventRecord).where(EventRecord.seq > seq)
    if types is not None:
        statement = statement.where(EventRecord.type.in_(types))
    return list((await session.scalars(statement.order_by(EventRecord.seq).limit(limit))).all())


async def events_by_seq(session: AsyncSession, seqs: Sequence[int]) -> dict[int, EventRecord]:
    if not seqs:
        return {}
    rows = await session.scalars(select(EventRecord).where(EventRecord.seq.in_(seqs)))
    return {row.seq: row for row in rows}


async def last_seq(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.coalesce(func.max(EventRecord.seq), 0))) or 0)


# --- subscriptions ---------------------------------------------------------------------------


async def add_subscription(session: AsyncSession, subscription: Subscription) -> None:
    session.add(subscription)
    await session.flush()


async def get_subscription(
    session: AsyncSession, subscription_id: uuid.UUID, *, orgnr: str | None = None
) -> Subscription | None:
    statement = select(Subscription).where(
        Subscription.id == subscription_id, Subscription.status != "deleted"
    )
    if orgnr is not None:
        statement = statement.where(Subscription.orgnr == orgnr)
    return await session.scalar(statement)


async def list_subscriptions(
    session: AsyncSession,
    *,
    orgnr: str,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Subscription]:
    statement = select(Subscription).where(
        Subscription.orgnr == orgnr, Subscription.status != "deleted"
    )
    if after is not None:
        moment, last_id = after
        statement = statement.where(
            (Subscription.created_at > moment)
            | ((Subscription.created_at == moment) & (Subscription.id > last_id))
        )
    statement = statement.order_by(Subscription.created_at, Subscription.id).limit(limit)
    return list((await session.scalars(statement)).all())


async def active_subscriptions(session: AsyncSession) -> list[Subscription]:
    return list(
        (await session.scalars(select(Subscription).where(Subscription.status == "active"))).all()
    )


async def set_status(
    session: AsyncSession,
    subscription_id: uuid.UUID,
    *,
    status: str,
    reason: str | None,
    now: datetime,
) -> None:
    await session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id)
        .values(status=status, disabled_reason=reason, changed_at=now)
    )
    # Nothing more goes out for it.
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.status == "pending",
        )
        .values(status="cancelled", finished_at=now)
    )


# --- deliveries ------------------------------------------------------------------------------


async def fan_out(
    session: AsyncSession, subscription: Subscription, *, limit: int, now: datetime
) -> int:
    """A pending delivery for each event after the subscription's cursor of one of its
    types; the cursor moves past every event considered. The number considered."""
    cursor = select(Subscription.cursor).where(Subscription.id == subscription.id)
    if _is_postgresql(session):
        cursor = cursor.with_for_update()
    locked = await session.scalar(cursor)
    if locked is None:
        return 0
    considered = await events_after(session, locked, limit=limit)
    if not considered:
        return 0
    wanted = set(subscription.event_types)
    rows = [
        {
            "subscription_id": subscription.id,
            "event_seq": event.seq,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for event in considered
        if event.type in wanted
    ]
    if rows:
        await session.execute(insert(WebhookDelivery), rows)
    await session.execute(
        update(Subscription)
        .where(Subscription.id == subscription.id)
        .values(cursor=considered[-1].seq)
    )
    return len(considered)


async def schedule_replay(
    session: AsyncSession,
    subscription: Subscription,
    *,
    from_seq: int,
    to_seq: int,
    now: datetime,
) -> int:
    """Pending deliveries again for the subscription's events in [from_seq, to_seq] that it
    has already considered; the number scheduled."""
    upper = min(to_seq, subscription.cursor)
    seqs = (
        await session.scalars(
            select(EventRecord.seq)
            .where(
                EventRecord.seq >= from_seq,
                EventRecord.seq <= upper,
                EventRecord.type.in_(subscription.event_types),
            )
            .order_by(EventRecord.seq)
        )
    ).all()
    rows = [
        {
            "subscription_id": subscription.id,
            "event_seq": seq,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for seq in seqs
    ]
    if rows:
        await session.execute(insert(WebhookDelivery), rows)
    return len(rows)


async def due_deliveries(
    session: AsyncSession, *, now: datetime, limit: int
) -> list[WebhookDelivery]:
    """Pending deliveries whose time has come, oldest first; on PostgreSQL locked, and
    those another replica holds skipped."""
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if _is_postgresql(session):
        statement = statement.with_for_update(skip_locked=True)
    return list((await session.scalars(statement)).all())


async def subscriptions_by_id(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Subscription]:
    if not ids:
        return {}
    rows = await session.scalars(select(Subscription).where(Subscription.id.in_(ids)))
    return {row.id: row for row in rows}


async def list_deliveries(
    session: AsyncSession,
    subscription_id: uuid.UUID,
    *,
    status: str | None,
    after: int | None,
    limit: int,
) -> list[tuple[WebhookDelivery, str, str]]:
    """Deliveries with their event's id and type, oldest first."""
    statement = (
        select(WebhookDelivery, EventRecord.event_id, EventRecord.type)
        .join(EventRecord, EventRecord.seq == WebhookDelivery.event_seq)
        .where(WebhookDelivery.subscription_id == subscription_id)
    )
    if status is not None:
        statement = statement.where(WebhookDelivery.status == status)
    if after is not None:
        statement = statement.where(WebhookDelivery.id > after)
    rows = await session.execute(statement.order_by(WebhookDelivery.id).limit(limit))
    return [(row[0], row[1], row[2]) for row in rows]
