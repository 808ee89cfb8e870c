"""All SQL of the consent service. Functions flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Uuid, and_, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.consent.models import (
    Consent,
    ConsentHistory,
    ConsentRequest,
    LegalBasis,
    LegalBasisChange,
    OutboxEvent,
    ParticipantKey,
)
from shared.data_keys import delete_in_order
from shared.outbox import outbox_about


async def add(session: AsyncSession, *rows: Any) -> None:
    session.add_all(rows)
    await session.flush()


async def get_request(session: AsyncSession, request_id: uuid.UUID) -> ConsentRequest | None:
    return await session.get(ConsentRequest, request_id)


def _after(
    statement: Any,
    model: type[Consent] | type[ConsentRequest],
    after: tuple[datetime, uuid.UUID] | None,
) -> Any:
    if after is None:
        return statement
    moment, row_id = after
    return statement.where(
        or_(model.created_at > moment, and_(model.created_at == moment, model.id > row_id))
    )


async def list_requests(
    session: AsyncSession,
    *,
    participant_id: uuid.UUID,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[ConsentRequest]:
    statement = select(ConsentRequest).where(ConsentRequest.participant_id == participant_id)
    if status is not None:
        statement = statement.where(ConsentRequest.status == status)
    statement = _after(statement, ConsentRequest, after)
    order = (ConsentRequest.created_at, ConsentRequest.id)
    return (await session.scalars(statement.order_by(*order).limit(limit))).all()


async def answer_request(
    session: AsyncSession,
    request_id: uuid.UUID,
    *,
    status: str,
    at: datetime,
    consent_id: uuid.UUID | None,
) -> bool:
    """Answer a pending request; False if it was answered already (by a concurrent call)."""
    result = await session.execute(
        update(ConsentRequest)
        .where(ConsentRequest.id == request_id, ConsentRequest.status == "pending")
        .values(status=status, answered_at=at, consent_id=consent_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def get_consent(session: AsyncSession, consent_id: uuid.UUID) -> Consent | None:
    return await session.get(Consent, consent_id)


async def list_consents(
    session: AsyncSession,
    *,
    participant_id: uuid.UUID,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[Consent]:
    statement = select(Consent).where(Consent.participant_id == participant_id)
    statement = _after(statement, Consent, after)
    return (
        await session.scalars(statement.order_by(Consent.created_at, Consent.id).limit(limit))
    ).all()


async def history(
    session: AsyncSession, consent_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ConsentHistory]]:
    found: dict[uuid.UUID, list[ConsentHistory]] = {consent_id: [] for consent_id in consent_ids}
    if not consent_ids:
        return found
    rows = await session.scalars(
        select(ConsentHistory)
        .where(ConsentHistory.consent_id.in_(consent_ids))
        .order_by(ConsentHistory.id)
    )
    for row in rows:
        found[row.consent_id].append(row)
    return found


async def withdraw(session: AsyncSession, consent_id: uuid.UUID, *, at: datetime) -> bool:
    """Withdraw an active consent; False if it was not active (withdrawn already)."""
    result = await session.execute(
        update(Consent)
        .where(Consent.id == consent_id, Consent.status == "active")
        .values(status="withdrawn", withdrawn_at=at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# The gateway asks for grants on every read: these statements are built once, since
# building them per request cost as much as running them.
_ACTIVE_CONSENTS = select(Consent).where(
    Consent.participant_id.in_(bindparam("participant_ids", expanding=True, type_=Uuid())),
    Consent.status == "active",
)
_LEGAL_BASES = select(LegalBasis).order_by(LegalBasis.ref)


async def active_consents(
    session: AsyncSession, participant_ids: Sequence[uuid.UUID]
) -> Sequence[Consent]:
    """Consents not withdrawn nor superseded (the decision checks their periods)."""
    found = await session.scalars(_ACTIVE_CONSENTS, {"participant_ids": list(participant_ids)})
    return found.all()


async def legal_bases(session: AsyncSession) -> Sequence[LegalBasis]:
    return (await session.scalars(_LEGAL_BASES)).all()


async def put_legal_basis(
    session: AsyncSession, basis: LegalBasis, *, change: dict[str, Any], by: str
) -> None:
    """Create or replace a legal basis and record the change in the registry's trail."""
    await session.merge(basis)
    session.add(
        LegalBasisChange(ref=basis.ref, change=change, changed_at=basis.updated_at, changed_by=by)
    )
    await session.flush()


async def legal_basis_changes(session: AsyncSession, ref: str | None) -> Sequence[LegalBasisChange]:
    statement = select(LegalBasisChange).order_by(LegalBasisChange.id)
    if ref is not None:
        statement = statement.where(LegalBasisChange.ref == ref)
    return (await session.scalars(statement)).all()


async def delete_participant_data(
    session: AsyncSession, participant_id: uuid.UUID
) -> dict[str, int]:
    """Delete the participant's consents with their history, their requests, their data key
    and the events about them still in the outbox; rows deleted per table."""
    consents = select(Consent.id).where(Consent.participant_id == participant_id)
    return await delete_in_order(
        session,
        delete(ConsentHistory).where(ConsentHistory.consent_id.in_(consents)),
        delete(Consent).where(Consent.participant_id == participant_id),
        delete(ConsentRequest).where(ConsentRequest.participant_id == participant_id),
        delete(ParticipantKey).where(ParticipantKey.participant_id == participant_id),
        outbox_about(OutboxEvent, participant_id),
    )
