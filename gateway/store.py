"""All SQL of the gateway. Functions take the session first and flush, never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, or_, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from gateway.models import (
    AuditDisclosure,
    AuditEntry,
    AuditSignedHead,
    EventRecord,
    OAuthClient,
    UsedAssertion,
    WebhookDelivery,
)
from shared.data_keys import delete_in_order


async def get_client(session: AsyncSession, *, client_id: str) -> OAuthClient | None:
    return await session.get(OAuthClient, client_id)


async def add_client(
    session: AsyncSession,
    *,
    client_id: str,
    orgnr: str,
    agency_type: str,
    scopes: Sequence[str],
    jwks: dict[str, Any],
    created_at: datetime,
) -> OAuthClient:
    client = OAuthClient(
        client_id=client_id,
        orgnr=orgnr,
        agency_type=agency_type,
        scopes=" ".join(scopes),
        jwks=jwks,
        created_at=created_at,
    )
    session.add(client)
    await session.flush()
    return client


async def remember_jti(
    session: AsyncSession, *, client_id: str, jti: str, expires_at: datetime
) -> bool:
    """Record a used assertion id; False if it was already recorded (a replay).

    ON CONFLICT DO NOTHING instead of catching the IntegrityError keeps the
    transaction usable, and a concurrent insert on another replica waits for ours.
    """
    values = {"client_id": client_id, "jti": jti, "expires_at": expires_at}
    if session.get_bind().dialect.name == "postgresql":
        result = await session.execute(
            postgresql.insert(UsedAssertion).values(**values).on_conflict_do_nothing()
        )
    else:
        result = await session.execute(
            sqlite.insert(UsedAssertion).values(**values).on_conflict_do_nothing()
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def prune_used_jtis(session: AsyncSession, *, now: datetime, limit: int = 500) -> int:
    """Forget up to `limit` assertion ids whose assertions have expired anyway.

    SKIP LOCKED (ignored by SQLite) lets replicas prune at once without waiting on
    or deadlocking against each other; what one skips, a later request removes.
    """
    expired = (
        select(UsedAssertion.client_id, UsedAssertion.jti)
        .where(UsedAssertion.expires_at < now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    statement = delete(UsedAssertion).where(
        tuple_(UsedAssertion.client_id, UsedAssertion.jti).in_(expired)
    )
    result = await session.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]


# pg_advisory_xact_lock key of the audit chain: the first 8 bytes of SHA-256("broen.audit.chain").
AUDIT_CHAIN_LOCK = 0x524F44DD7D929AD7


async def lock_audit_chain(session: AsyncSession) -> None:
    """Serialise appends to the chain across replicas until this transaction ends.

    PostgreSQL: a transaction-level advisory lock. SQLite: the write transaction is already
    exclusive (BEGIN IMMEDIATE, shared/db.py). Either way the primary key on the sequence
    number refuses a fork should a writer get here without the lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_CHAIN_LOCK})


async def audit_chain_head(session: AsyncSession) -> tuple[int, str] | None:
    """The last entry's sequence number and hash, or None for an empty chain."""
    row = (
        await session.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        )
    ).first()
    return (int(row[0]), str(row[1])) if row else None


async def insert_audit_entries(
    session: AsyncSession,
    rows: Sequence[dict[str, Any]],
    disclosures: Sequence[dict[str, Any]] = (),
) -> None:
    """Insert prepared entries (one executemany) and their disclosure index; the caller
    holds the chain lock."""
    await session.execute(insert(AuditEntry), list(rows))
    if disclosures:
        await session.execute(insert(AuditDisclosure), list(disclosures))


AuditRow = Row[int, str, str | None, str]
_AUDIT_COLUMNS = (
    AuditEntry.seq,
    AuditEntry.participant_id,
    AuditEntry.caller_orgnr,
    AuditEntry.content,
)


async def audit_entries_about(
    session: AsyncSession, *, participant_id: str, before: int | None, limit: int
) -> Sequence[AuditRow]:
    """Entries about one participant, newest first (innsyn)."""
    statement = select(*_AUDIT_COLUMNS).where(AuditEntry.participant_id == participant_id)
    if before is not None:
        statement = statement.where(AuditEntry.seq < before)
    result = await session.execute(statement.order_by(AuditEntry.seq.desc()).limit(limit))
    return result.all()


async def count_audit_entries_about(session: AsyncSession, participant_ids: Sequence[str]) -> int:
    statement = select(func.count()).where(AuditEntry.participant_id.in_(participant_ids))
    return int(await session.scalar(statement) or 0)


async def audit_entries_of_organisation(
    session: AsyncSession,
    *,
    orgnr: str,
    participant_id: str | None,
    before: int | None,
    limit: int,
) -> Sequence[AuditRow]:
    """Entries where the organisation asked, or where its values crossed to another
    organisation, newest first (its auditor's view)."""
    disclosed = select(AuditDisclosure.seq).where(AuditDisclosure.orgnr == orgnr)
    statement = select(*_AUDIT_COLUMNS).where(
        or_(AuditEntry.caller_orgnr == orgnr, AuditEntry.seq.in_(disclosed))
    )
    if participant_id is not None:
        statement = statement.where(AuditEntry.participant_id == participant_id)
    if before is not None:
        statement = statement.where(AuditEntry.seq < before)
    result = await session.execute(statement.order_by(AuditEntry.seq.desc()).limit(limit))
    return result.all()


async def add_signed_head(
    session: AsyncSession, *, seq: int, hash: str, signed_at: datetime, kid: str, jws: str
) -> AuditSignedHead:
    head = AuditSignedHead(seq=seq, hash=hash, signed_at=signed_at, kid=kid, jws=jws)
    session.add(head)
    await session.flush()
    return head


async def latest_signed_head(session: AsyncSession) -> AuditSignedHead | None:
    return (
        await session.execute(select(AuditSignedHead).order_by(AuditSignedHead.id.desc()).limit(1))
    ).scalar_one_or_none()


async def audit_entries_after(
    connection: AsyncConnection, *, after: int, limit: int
) -> Sequence[Row[int, str, str | None, str, str, str]]:
    """One keyset page of the chain in order, as plain tuples (verification reads millions)."""
    result = await connection.execute(
        select(
            AuditEntry.seq,
            AuditEntry.participant_id,
            AuditEntry.caller_orgnr,
            AuditEntry.content,
            AuditEntry.prev_hash,
            AuditEntry.hash,
        )
        .where(AuditEntry.seq > after)
        .order_by(AuditEntry.seq)
        .limit(limit)
    )
    return result.all()


async def all_signed_heads(
    connection: AsyncConnection,
) -> Sequence[Row[int, int, str, datetime, str, str]]:
    result = await connection.execute(
        select(
            AuditSignedHead.id,
            AuditSignedHead.seq,
            AuditSignedHead.hash,
            AuditSignedHead.signed_at,
            AuditSignedHead.kid,
            AuditSignedHead.jws,
        ).order_by(AuditSignedHead.id)
    )
    return result.all()


async def delete_events_about(session: AsyncSession, participant_id: str) -> dict[str, int]:
    """Delete the event log's events about the participant and their webhook deliveries
    (the audit log keeps its entries: they name the participant by internal id only)."""
    about = EventRecord.envelope["subject"].as_string() == participant_id
    return await delete_in_order(
        session,
        delete(WebhookDelivery).where(
            WebhookDelivery.event_seq.in_(select(EventRecord.seq).where(about))
        ),
        delete(EventRecord).where(about),
    )
