"""All SQL of the gateway. Functions take the session first and flush, never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.models import OAuthClient, UsedAssertion


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
