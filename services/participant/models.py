"""Participant records. Every personal attribute is a row of its own, owned by the
organisation that recorded it, with provenance, and sealed with the participant's data key."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
    text,
)
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


class Guardianship(Base):
    """A person with parental responsibility for a minor participant, known only by the
    blind index of their national id; it ends on the participant's 18th birthday."""

    __tablename__ = "guardianships"
    __table_args__ = (UniqueConstraint("participant_id", "guardian_index"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), index=True
    )
    guardian_index: Mapped[str] = mapped_column(String(64), index=True)
    # folkeregisteret (the population register) | staff (recorded from documentation)
    source: Mapped[str] = mapped_column(String(30))
    recorded_by_orgnr: Mapped[str] = mapped_column(String(9))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    valid_to: Mapped[datetime] = mapped_column(UtcDateTime)


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


class Unit(Base):
    """A unit of an organisation: a NAV-kontor, NAV Tiltak, a school, an OT unit, ..."""

    __tablename__ = "units"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    orgnr: Mapped[str] = mapped_column(ForeignKey("organisations.orgnr"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(60))
    # Where messages to the unit land when no person is assigned.
    inbox_handle: Mapped[str] = mapped_column(String(80), unique=True)
    # For NAV units: a name that says nothing about where a person lives (kode 6).
    routing_handle: Mapped[str | None] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Staff(Base):
    __tablename__ = "staff"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    orgnr: Mapped[str] = mapped_column(ForeignKey("organisations.orgnr"), index=True)
    unit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("units.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSON)
    # Explicit authorisation to see `skjermet` participants (e.g. NAV employees as participants).
    skjermet_authorised: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Assignment(Base):
    """Who at an organisation has a role for a participant, and when. Never updated except
    to end it: a new assignment in the same role from the same organisation ends the old."""

    __tablename__ = "assignments"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), index=True
    )
    orgnr: Mapped[str] = mapped_column(ForeignKey("organisations.orgnr"))
    role: Mapped[str] = mapped_column(String(40))
    # Indexed: a staff member's caseload (their inbox) and a unit's are read by these.
    staff_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff.id"), index=True)
    unit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("units.id"), index=True)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The timeline event that made it (a NAV integration's `veileder.tildelt`), if any.
    source_event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (
        # One open assignment per role and organisation: a concurrent second one fails.
        Index(
            "uq_assignments_open_role",
            "participant_id",
            "orgnr",
            "role",
            unique=True,
            sqlite_where=text("valid_to IS NULL"),
            postgresql_where=text("valid_to IS NULL"),
        ),
    )


class ProgrammeParticipation(Base):
    """A participant's place in a programme run by an organisation (e.g. `vgo`)."""

    __tablename__ = "programme_participations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE"), index=True
    )
    orgnr: Mapped[str] = mapped_column(ForeignKey("organisations.orgnr"))
    programme: Mapped[str] = mapped_column(String(80))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Event(Base):
    """One fact on the participant's timeline, as one organisation recorded it. Never
    updated: a correction is a new event that names the one it corrects."""

    __tablename__ = "events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("participants.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(80))
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)
    source_orgnr: Mapped[str] = mapped_column(ForeignKey("organisations.orgnr"))
    source_agency_type: Mapped[str] = mapped_column(String(40))
    source_system: Mapped[str] = mapped_column(String(100))
    verification: Mapped[str] = mapped_column(String(20))
    # Payloads may hold free text: sealed with the participant's data key, like attributes.
    payload_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    corrects: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("events.id"))
    # An organisation's Idempotency-Key, and the hash of the request it first came with.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # A concurrent retry with the same key fails here instead of recording twice.
        UniqueConstraint("source_orgnr", "idempotency_key"),
        Index("ix_events_timeline", "participant_id", "occurred_at", "id"),
    )
