"""Participant records. Every personal attribute is a row of its own, owned by the
organisation that recorded it, with provenance, and sealed with the participant's data key."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UtcDateTime, make_metadata
from shared.outbox import OutboxMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


class OutboxEvent(OutboxMixin, Base):
    pass


class Organisation(Base):
    __tablename__ = "organisations"

    orgnr: Mapped[str] = mapped_column(String(9), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    agency_type: Mapped[str] = mapped_column(String(40))
    county: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Participant(Base):
    __tablename__ = "participants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    # HMAC of the normalised national id: equality lookups without storing it in clear.
    national_id_index: Mapped[str] = mapped_column(String(64), unique=True)
    national_id_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ParticipantKey(Base):
    """The participant's data key, wrapped by a master key. Deleting it shreds their data."""

    __tablename__ = "participant_keys"

    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), primary_key=True
    )
    kid: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)


class Registration(Base):
    """An organisation that registered (knows) the participant."""

    __tablename__ = "registrations"

    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), primary_key=True
    )
    orgnr: Mapped[str] = mapped_column(ForeignKey("organisations.orgnr"), primary_key=True)
    registered_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Attribute(Base):
    """One attribute value as one organisation recorded it."""

    __tablename__ = "attributes"

    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), primary_key=True
    )
    field: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_orgnr: Mapped[str] = mapped_column(ForeignKey("organisations.orgnr"), primary_key=True)
    owner_agency_type: Mapped[str] = mapped_column(String(40))
    value_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    source_system: Mapped[str] = mapped_column(String(100))
    verification: Mapped[str] = mapped_column(String(20))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
