"""The transactional outbox: a service records its domain events in the same transaction
as the change, and they leave from here at least once, each with its unique id.

- With NATS configured, the service's relay (`shared/relay.py`) publishes what is pending
  to JetStream and marks it published.
- In the embedded default the gateway takes what is pending through the internal routes
  below and marks it published once its own event log holds it.

Either way an event is marked only after its receiver confirmed it, so a crash in between
sends it again (consumers deduplicate by the CloudEvents id)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import JSON, Delete, Index, Integer, String, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from shared.db import SessionDep, UtcDateTime
from shared.events import CloudEvent
from shared.internal_auth import CallerDep
from shared.problems import Forbidden


class OutboxMixin:
    """Mix into the service's own declarative base: `class OutboxEvent(OutboxMixin, Base)`."""

    @declared_attr.directive
    def __tablename__(cls) -> str:
        return "outbox"

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        # What is still to send, in order, without scanning what was sent.
        return (
            Index(
                "ix_outbox_pending",
                "position",
                postgresql_where=text("published_at IS NULL"),
                sqlite_where=text("published_at IS NULL"),
            ),
        )

    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str | None] = mapped_column(String(200))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


async def record_event(session: AsyncSession, model: type[OutboxMixin], event: CloudEvent) -> None:
    """Add the event to the current transaction; it commits or rolls back with the change."""
    session.add(
        model(  # type: ignore[call-arg]
            event_id=event.id,
            type=event.type,
            subject=event.subject,
            envelope=event.model_dump(mode="json"),
            created_at=event.time,
        )
    )


async def pending(
    session: AsyncSession, model: type[OutboxMixin], *, limit: int
) -> list[dict[str, Any]]:
    """The envelopes not yet published, oldest first. On PostgreSQL the rows are locked
    and rows another relay holds are skipped, so replicas do not publish the same rows."""
    statement = (
        select(model.envelope)
        .where(model.published_at.is_(None))
        .order_by(model.position)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return list((await session.scalars(statement)).all())


async def mark_published(
    session: AsyncSession, model: type[OutboxMixin], event_ids: Sequence[str]
) -> None:
    if event_ids:
        await session.execute(
            update(model)
            .where(model.event_id.in_(event_ids), model.published_at.is_(None))
            .values(published_at=datetime.now(UTC))
        )


# --- the embedded default: the gateway takes the events -------------------------------------

OUTBOX_BATCH = 500


class PendingEvents(BaseModel):
    items: list[dict[str, Any]] = Field(description="CloudEvents envelopes, oldest first.")


class PublishedEvents(BaseModel):
    ids: list[str] = Field(max_length=OUTBOX_BATCH)


def outbox_about(model: type[OutboxMixin], participant_id: uuid.UUID) -> Delete:
    """Deletes the events about the participant (their subject), sent or not: a participant
    who is forgotten is not told about afterwards."""
    return delete(model).where(model.subject == str(participant_id))


def _only_the_gateway(caller: CallerDep) -> None:
    if caller.kind != "service" or caller.client_id != "gateway":
        raise Forbidden("Only the gateway takes events from a service's outbox.")


def outbox_router(model: type[OutboxMixin]) -> APIRouter:
    """`GET /internal/v1/outbox` and `POST /internal/v1/outbox/published`, for the gateway."""
    router = APIRouter(
        prefix="/internal/v1/outbox",
        include_in_schema=False,
        dependencies=[Depends(_only_the_gateway)],
    )

    @router.get("")
    async def list_pending(
        session: SessionDep,
        limit: Annotated[int, Query(ge=1, le=OUTBOX_BATCH)] = OUTBOX_BATCH,
    ) -> Response:
        items = await pending(session, model, limit=limit)
        return Response(PendingEvents(items=items).model_dump_json(), media_type="application/json")

    @router.post("/published", status_code=204)
    async def confirm_published(data: PublishedEvents, session: SessionDep) -> Response:
        await mark_published(session, model, data.ids)
        return Response(status_code=204)

    return router
