"""Guardians: who may act for a minor participant, until the 18th birthday; and who a
citizen with a national id is to Broen (a participant, a guardian, or both)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession
from stdnum.no import fodselsnummer

from services.participant import store
from services.participant.models import Guardianship
from services.participant.schemas import (
    CitizenIdentity,
    GuardianCreate,
    GuardianRead,
    eighteenth_birthday,
)
from services.participant.service import (
    NATIONAL_ID_INDEX,
    caller_organisation,
    now_utc,
    open_data_key,
    participant_event,
    registered_participant,
)
from shared.crypto import Keyring, associated_data, open_sealed
from shared.internal_auth import CallerContext
from shared.problems import ValidationProblem

# A blind index of its own kind: the pseudonym cannot be matched against the national id index.
GUARDIAN_PSEUDONYM = "guardian"


class NoGuardianForAdults(ValidationProblem):
    type = "no-guardian-for-adults"
    title = "An adult has no guardian"


async def add_guardian(
    session: AsyncSession,
    keyring: Keyring,
    caller: CallerContext,
    participant_id: uuid.UUID,
    data: GuardianCreate,
) -> tuple[GuardianRead, bool]:
    """Record a guardian (idempotent: the same person again returns the same record)."""
    organisation = await caller_organisation(session, caller)
    found = await registered_participant(session, participant_id, organisation.orgnr)
    participant = await store.get_participant(session, participant_id)
    assert participant is not None  # registered_participant found it
    own_number = open_sealed(
        open_data_key(keyring, participant_id, found),
        participant.national_id_sealed,
        associated_data("participants", "national_id", str(participant_id)),
    ).decode()
    valid_to = eighteenth_birthday(fodselsnummer.get_birth_date(own_number))
    now = now_utc()
    if valid_to <= now:
        raise NoGuardianForAdults("The participant is 18 or older and acts for themselves.")
    index = keyring.blind_index(NATIONAL_ID_INDEX, data.national_id)
    if data.national_id == own_number:
        raise ValidationProblem("A participant is not their own guardian.")
    existing = await store.find_guardianship(
        session, participant_id=participant_id, guardian_index=index
    )
    if existing is not None:
        return GuardianRead.model_validate(existing, from_attributes=True), False
    guardianship = Guardianship(
        id=uuid.uuid4(),
        participant_id=participant_id,
        guardian_index=index,
        source=data.source,
        recorded_by_orgnr=organisation.orgnr,
        recorded_at=now,
        valid_to=valid_to,
    )
    await store.add_guardianship(session, guardianship)
    await participant_event(
        session,
        "participant.guardian_recorded",
        participant_id,
        {"participant_id": str(participant_id), "guardianship_id": str(guardianship.id)},
    )
    return GuardianRead.model_validate(guardianship, from_attributes=True), True


async def identify(session: AsyncSession, keyring: Keyring, national_id: str) -> CitizenIdentity:
    """A citizen's national id (from their identity provider) mapped through the blind index."""
    index = keyring.blind_index(NATIONAL_ID_INDEX, national_id)
    return CitizenIdentity(
        participant_id=await store.find_participant_id(session, index),
        wards=await store.wards(session, guardian_index=index, now=now_utc()),
        pseudonym=keyring.blind_index(GUARDIAN_PSEUDONYM, national_id)[:32],
    )
