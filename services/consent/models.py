"""Tables of the consent service: consents with their history, consent requests, the
participants' data keys (for the free text they hold), and the legal-basis registry.

Field names follow ISO/IEC TS 27560 and FHIR Consent where they fit: `grantor` (27560's
"data principal" or their representative; FHIR `grantor`), `controllers` (FHIR
`controller`), `disclosers`/`recipients` (FHIR `provision.actor` with the roles
disclosing/receiving), `purposes`, `categories` (FHIR `provision.data`/`securityLabel`),
`valid_from`/`valid_to` (FHIR `period`), `notice_*` (27560 notice), `collection_method`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.data_keys import ParticipantKeyMixin
from shared.db import UtcDateTime, make_metadata
from shared.outbox import OutboxMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


class OutboxEvent(OutboxMixin, Base):
    pass


class ParticipantKey(ParticipantKeyMixin, Base):
    """The participant's data key here: it seals the free text of their consents and
    requests; destroying it shreds that text."""


class Consent(Base):
    __tablename__ = "consents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    # participant | guardian | representative, and how they relate to the participant.
    grantor: Mapped[str] = mapped_column(String(20))
    grantor_relation: Mapped[str] = mapped_column(String(40))
    # Organisation numbers of the controllers the consent is given to.
    controllers: Mapped[list[str]] = mapped_column(JSON)
    # Agency types or organisation numbers.
    disclosers: Mapped[list[str]] = mapped_column(JSON)
    recipients: Mapped[list[str]] = mapped_column(JSON)
    purposes: Mapped[list[str]] = mapped_column(JSON)
    categories: Mapped[list[str]] = mapped_column(JSON)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # active | withdrawn | superseded; `expired` is derived from valid_to when read.
    status: Mapped[str] = mapped_column(String(20), index=True)
    notice_version: Mapped[str] = mapped_column(String(80))
    notice_hash: Mapped[str] = mapped_column(String(100))
    notice_language: Mapped[str] = mapped_column(String(2))
    # digital (by the participant in Broen) | paper | verbal | digital_external
    collection_method: Mapped[str] = mapped_column(String(30))
    collected_by_orgnr: Mapped[str | None] = mapped_column(String(9))
    collected_by_staff_id: Mapped[str | None] = mapped_column(String(36))
    evidence_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    request_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class ConsentHistory(Base):
    """Every event in a consent's life, in order: given, recorded, withdrawn, superseded."""

    __tablename__ = "consent_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consent_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("consents.id"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Who: "participant", "guardian", or "<orgnr>" / "<orgnr>/<staff id>". No names.
    actor: Mapped[str] = mapped_column(String(100))


class ConsentRequest(Base):
    __tablename__ = "consent_requests"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    participant_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    requester_orgnr: Mapped[str] = mapped_column(String(9))
    requester_staff_id: Mapped[str | None] = mapped_column(String(36))
    disclosers: Mapped[list[str]] = mapped_column(JSON)
    recipients: Mapped[list[str]] = mapped_column(JSON)
    purposes: Mapped[list[str]] = mapped_column(JSON)
    categories: Mapped[list[str]] = mapped_column(JSON)
    valid_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    justification_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    notice_version: Mapped[str] = mapped_column(String(80))
    notice_language: Mapped[str] = mapped_column(String(2))
    # pending | accepted | declined
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    consent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class LegalBasis(Base):
    """A legal reference the policy's `legal:<ref>` flows may name."""

    __tablename__ = "legal_bases"

    ref: Mapped[str] = mapped_column(String(80), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    citation: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LegalBasisChange(Base):
    """The registry's own audit trail: every change, what it set, and which operator."""

    __tablename__ = "legal_basis_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(80), index=True)
    change: Mapped[dict[str, Any]] = mapped_column(JSON)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    changed_by: Mapped[str] = mapped_column(String(100))
