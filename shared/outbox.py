"""The transactional outbox: a service records its domain events in the same
transaction as the change. Delivery (the relay) reads this table later."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from shared.db import UtcDateTime
from shared.events import CloudEvent


class OutboxMixin:
    """Mix into the service's own declarative base: `class OutboxEvent(OutboxMixin, Base)`."""

    @declared_attr.directive
    def __tablename__(cls) -> str:
        return "outbox"

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
