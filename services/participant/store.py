"""All SQL of the participant service. Functions flush, never commit."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.participant.models import (
    Attribute,
    Organisation,
    Participant,
    ParticipantKey,
    Registration,
    Staff,
    Unit,
)


async def add_organisation(
    session: AsyncSession,
    *,
    orgnr: str,
    name: str,
    agency_type: str,
    county: str | None,
    now: datetime,
) -> Organisation | None:
    """The new organisation, or None when the orgnr is already registered."""
    organisation = Organisation(
        orgnr=orgnr, name=name, agency_type=agency_type, county=county, created_at=now
    )
    try:
        async with session.begin_nested():
            session.add(organisation)
    except IntegrityError:
        return None
    return organisation


async def get_organisation(session: AsyncSession, orgnr: str) -> Organisation | None:
    return await session.get(Organisation, orgnr)


async def list_organisations(session: AsyncSession) -> list[Organisation]:
    return list((await session.scalars(select(Organisation).order_by(Organisation.orgnr))).all())


async def find_participant_id(session: AsyncSession, national_id_index: str) -> uuid.UUID | None:
    return await session.scalar(
        select(Participant.id).where(Participant.national_id_index == national_id_index)
    )


async def insert_participant(
    session: AsyncSession,
    *,
    participant_id: uuid.UUID,
    national_id_index: str,
    national_id_sealed: bytes,
    key_id: str,
    wrapped_key: bytes,
    now: datetime,
) -> bool:
    """Insert a new participant and their data key; False if the national id is already known
    (another request may have registered the same person a moment ago)."""
    try:
        async with session.begin_nested():
            session.add(
                Participant(
                    id=participant_id,
                    national_id_index=national_id_index,
                    national_id_sealed=national_id_sealed,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            session.add(
                ParticipantKey(participant_id=participant_id, kid=key_id, wrapped_key=wrapped_key)
            )
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True)
class ReadableParticipant:
    version: int
    key_id: str
    wrapped_key: bytes
    registered_by_orgnr: bool


# The read path's statements are built once: building them per request cost more CPU
# than running them.
_READABLE_PARTICIPANT = (
    select(
        Participant.version,
        ParticipantKey.kid,
        ParticipantKey.wrapped_key,
        exists()
        .where(
            Registration.participant_id == bindparam("participant_id"),
            Registration.orgnr == bindparam("orgnr"),
        )
        .correlate(None),
    )
    .join(ParticipantKey, ParticipantKey.participant_id == Participant.id)
    .where(Participant.id == bindparam("participant_id"))
)
_ATTRIBUTES = select(Attribute).where(Attribute.participant_id == bindparam("participant_id"))


async def get_readable_participant(
    session: AsyncSession, participant_id: uuid.UUID, *, orgnr: str | None
) -> ReadableParticipant | None:
    """What a read needs besides the attributes, in one query: None if unknown or shredded."""
    parameters = {"participant_id": participant_id, "orgnr": orgnr}
    row = (await session.execute(_READABLE_PARTICIPANT, parameters)).one_or_none()
    if row is None:
        return None
    return ReadableParticipant(row[0], row[1], row[2], bool(row[3]))


async def get_wrapped_key(
    session: AsyncSession, participant_id: uuid.UUID
) -> ParticipantKey | None:
    return await session.get(ParticipantKey, participant_id)


async def add_registration(
    session: AsyncSession, *, participant_id: uuid.UUID, orgnr: str, now: datetime
) -> bool:
    """Register the organisation with the participant; False if it already was."""
    try:
        async with session.begin_nested():
            session.add(Registration(participant_id=participant_id, orgnr=orgnr, registered_at=now))
    except IntegrityError:
        return False
    return True


async def list_attributes(session: AsyncSession, participant_id: uuid.UUID) -> list[Attribute]:
    result = await session.scalars(_ATTRIBUTES, {"participant_id": participant_id})
    return list(result.all())


async def put_attribute(session: AsyncSession, attribute: Attribute) -> None:
    await session.merge(attribute)


async def remove_attribute(
    session: AsyncSession, *, participant_id: uuid.UUID, field: str, owner_orgnr: str
) -> None:
    await session.execute(
        delete(Attribute).where(
            Attribute.participant_id == participant_id,
            Attribute.field == field,
            Attribute.owner_orgnr == owner_orgnr,
        )
    )


async def bump_version(
    session: AsyncSession, *, participant_id: uuid.UUID, expected_version: int | None, now: datetime
) -> int | None:
    """Increase the version; with `expected_version`, only if it still matches (If-Match).
    Returns the new version, or None when the expected version was stale."""
    statement = update(Participant).where(Participant.id == participant_id)
    if expected_version is not None:
        statement = statement.where(Participant.version == expected_version)
    result = await session.execute(
        statement.values(version=Participant.version + 1, updated_at=now).returning(
            Participant.version
        )
    )
    return result.scalar_one_or_none()


async def add_unit(session: AsyncSession, unit: Unit) -> bool:
    """False when a handle is already taken."""
    try:
        async with session.begin_nested():
            session.add(unit)
    except IntegrityError:
        return False
    return True


async def get_unit(session: AsyncSession, unit_id: uuid.UUID) -> Unit | None:
    return await session.get(Unit, unit_id)


async def list_units(session: AsyncSession, *, orgnr: str) -> list[Unit]:
    result = await session.scalars(select(Unit).where(Unit.orgnr == orgnr).order_by(Unit.name))
    return list(result.all())


async def add_staff(session: AsyncSession, staff: Staff) -> None:
    session.add(staff)
    await session.flush()


async def get_staff(session: AsyncSession, staff_id: uuid.UUID) -> Staff | None:
    return await session.get(Staff, staff_id)
