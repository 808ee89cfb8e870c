"""The gateway's own tables (its database holds nothing about participants' data)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, LargeBinary, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UtcDateTime, make_metadata


class Base(DeclarativeBase):
    metadata = make_metadata()


class OAuthClient(Base):
    """A system registered as an OAuth2 client of one organisation."""

    __tablename__ = "oauth_client"

    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    orgnr: Mapped[str] = mapped_column(String(9), index=True)
    agency_type: Mapped[str] = mapped_column(String(50))
    # Space-separated, as OAuth writes scopes.
    scopes: Mapped[str] = mapped_column(String(500))
    # Public keys only; the client signs its assertions with the private halves.
    jwks: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UsedAssertion(Base):
    """The jti of a client assertion already used; the primary key refuses a replay,
    also when two replicas see the same assertion at once."""

    __tablename__ = "oauth_used_jti"

    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    jti: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


# INTEGER PRIMARY KEY on SQLite: the sequence number is the rowid, so keyset scans need no index.
AuditSeq = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(Base):
    """One entry of the audit chain (gateway/audit.py documents the format and the hash).

    `participant_id` and `caller_orgnr` are columns because innsyn searches by them; they
    are part of the hashed entry, so editing one breaks the chain like editing `content`.
    """

    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(AuditSeq, primary_key=True, autoincrement=False)
    participant_id: Mapped[str] = mapped_column(String(36), index=True)
    caller_orgnr: Mapped[str | None] = mapped_column(String(9), index=True)
    # The canonical JSON of the rest of the entry, exactly the bytes that were hashed.
    content: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditDisclosure(Base):
    """Which organisations' values an entry let cross to another organisation: the index
    an auditor of the disclosing organisation searches by. It is derived from the entry's
    hashed content (`released[].owner`), so the chain, not this table, is the evidence."""

    __tablename__ = "audit_disclosure"

    orgnr: Mapped[str] = mapped_column(String(9), primary_key=True)
    seq: Mapped[int] = mapped_column(AuditSeq, primary_key=True)


class AuditSignedHead(Base):
    """A head of the audit chain (sequence number and hash) signed with the audit key."""

    __tablename__ = "audit_signed_head"

    id: Mapped[int] = mapped_column(AuditSeq, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    kid: Mapped[str] = mapped_column(String(100))
    # Compact JWS whose payload holds seq, hash and time: the columns are only a copy.
    jws: Mapped[str] = mapped_column(Text)


# --- events: the changes feed and the webhooks (gateway/events/) ----------------------------


class EventRecord(Base):
    """A domain event of one of the services, numbered in the order the gateway took it in.
    The changes feed and the webhooks read from here, and project per reader; the envelope
    holds ids and codes only (the services never put personal data in events)."""

    __tablename__ = "event_log"

    seq: Mapped[int] = mapped_column(AuditSeq, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(200))
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Subscription(Base):
    """An organisation's webhook: where to, which event types, for which purpose."""

    __tablename__ = "subscription"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    orgnr: Mapped[str] = mapped_column(String(9), index=True)
    agency_type: Mapped[str] = mapped_column(String(50))
    client_id: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JSON)
    purpose: Mapped[str] = mapped_column(String(50))
    # The signing secret, wrapped with the gateway's master key (shared/crypto.py).
    secret_kid: Mapped[str] = mapped_column(String(100))
    secret_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20))  # active, disabled, deleted
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    # The last event of the log considered for this subscription.
    cursor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookDelivery(Base):
    """One event to one subscription, until it is delivered, withheld, or dead-lettered."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_subscription", "subscription_id", "id"),
    )

    id: Mapped[int] = mapped_column(AuditSeq, primary_key=True, autoincrement=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_seq: Mapped[int] = mapped_column(BigInteger)
    # pending, delivered, withheld (the policy let nothing through), dead, cancelled
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The receiver's status code, or what went wrong before one (never a body).
    last_result: Mapped[str | None] = mapped_column(String(100))
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
