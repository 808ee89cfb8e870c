"""Tables of the messaging service: threads between two sides about one participant, their
messages (sealed with the participant's data key here), handovers, and the outbox.

A thread's initiator is the staff member (or organisation's system) who opened it. Its
recipient is a slot — a role at an organisation for the participant, or a unit's inbox —
and the slot's current holder, which changes when the assignment does (a handover)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.data_keys import ParticipantKeyMixin
from shared.db import UtcDateTime, make_metadata
from shared.outbox import OutboxMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


class OutboxEvent(OutboxMixin, Base):
    pass


class ParticipantKey(ParticipantKeyMixin, Base):
    """The participant's data key here: it seals subjects and bodies; destroying it makes
    every message about the participant unreadable."""


class Thread(Base):
    __tablename__ = "threads"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    purpose: Mapped[str] = mapped_column(String(40))
    subject_sealed: Mapped[bytes] = mapped_column(LargeBinary)

    initiator_orgnr: Mapped[str] = mapped_column(String(9))
    initiator_agency_type: Mapped[str] = mapped_column(String(40))
    initiator_role: Mapped[str | None] = mapped_column(String(40))
    initiator_unit_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # None: the organisation's system opened it.
    initiator_staff_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)

    recipient_orgnr: Mapped[str] = mapped_column(String(9))
    recipient_agency_type: Mapped[str] = mapped_column(String(40))
    # None: addressed to the unit's inbox itself, not to a role.
    recipient_role: Mapped[str | None] = mapped_column(String(40))
    # The slot's holder when last seen: a staff member, or (staff None) the unit's inbox.
    recipient_unit_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    recipient_staff_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    recipient_staff_name: Mapped[str | None] = mapped_column(String(200))
    recipient_inbox_handle: Mapped[str] = mapped_column(String(80))
    recipient_routing_handle: Mapped[str | None] = mapped_column(String(80))

    # The participant's adressebeskyttelse as the last send saw it (the gateway decides
    # which unit handle another organisation is shown with it).
    protection: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_message_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_message_side: Mapped[str] = mapped_column(String(10))
    message_count: Mapped[int] = mapped_column(Integer)
    initiator_unread: Mapped[int] = mapped_column(Integer)
    recipient_unread: Mapped[int] = mapped_column(Integer)
    # Read receipts: each side has read every message sent before this moment.
    initiator_read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    recipient_read_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    overdue_notified_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(10))

    __table_args__ = (
        Index("ix_threads_slot", "participant_id", "recipient_orgnr", "recipient_role"),
        Index("ix_threads_initiator_org", "initiator_orgnr"),
        Index("ix_threads_recipient_org", "recipient_orgnr"),
        Index("ix_threads_waiting", "closed_at", "last_message_side", "last_message_at"),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    thread_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    participant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    side: Mapped[str] = mapped_column(String(10))
    sender_orgnr: Mapped[str] = mapped_column(String(9))
    sender_unit_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    sender_staff_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    body_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    sent_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_messages_thread", "thread_id", "sent_at", "id"),)


class Handover(Base):
    """The recipient slot changed hands (a new assignment in the role): who held it, who
    holds it now, and when the new assignment began."""

    __tablename__ = "handovers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    thread_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("threads.id", ondelete="CASCADE"), index=True
    )
    from_staff_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    from_unit_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    to_staff_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    to_unit_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
