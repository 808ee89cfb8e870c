"""The gateway's own tables (its database holds nothing about participants' data)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import make_metadata
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
