"""The gateway's own tables (its database holds nothing about participants' data)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UtcDateTime, make_metadata
from shared.outbox import OutboxMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


class OutboxEvent(OutboxMixin, Base):
    pass


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
