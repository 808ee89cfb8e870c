"""Units and staff: who works where, in which role. Organisations are registered by the
operator (`broen admin ...`); the gateway reads staff here when a system acts for a person."""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.participant import store
from services.participant.errors import OrganisationNotFound, StaffNotFound, UnitNotFound
from services.participant.models import Staff, Unit
from services.participant.schemas import StaffCreate, StaffRead, UnitCreate, UnitRead

_NORWEGIAN_LETTERS = str.maketrans({"æ": "ae", "ø": "o", "å": "a"})


def _slug(name: str) -> str:
    # æ, ø, å by the Norwegian convention; other accents dropped (Grünerløkka: grunerlokka).
    folded = unicodedata.normalize("NFKD", name.lower().translate(_NORWEGIAN_LETTERS))
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:50] or "unit"


async def add_unit(session: AsyncSession, data: UnitCreate) -> UnitRead:
    organisation = await store.get_organisation(session, data.orgnr)
    if organisation is None:
        raise OrganisationNotFound(f"No organisation {data.orgnr} is registered.")
    while True:
        unit = Unit(
            id=uuid.uuid4(),
            orgnr=data.orgnr,
            name=data.name,
            kind=data.kind,
            inbox_handle=f"{_slug(data.name)}-{secrets.token_hex(3)}",
            # Neutral on purpose: for a kode 6 person even the office name tells where they live.
            routing_handle=(
                f"nav-ruting-{secrets.token_hex(5)}" if organisation.agency_type == "nav" else None
            ),
            created_at=datetime.now(UTC),
        )
        if await store.add_unit(session, unit):
            return UnitRead.model_validate(unit, from_attributes=True)


async def add_staff(session: AsyncSession, data: StaffCreate) -> StaffRead:
    unit = await store.get_unit(session, data.unit_id)
    if unit is None or unit.orgnr != data.orgnr:
        raise UnitNotFound(f"Organisation {data.orgnr} has no such unit.")
    staff = Staff(
        id=uuid.uuid4(),
        orgnr=data.orgnr,
        unit_id=data.unit_id,
        name=data.name,
        roles=list(dict.fromkeys(data.roles)),
        skjermet_authorised=data.skjermet_authorised,
        created_at=datetime.now(UTC),
    )
    await store.add_staff(session, staff)
    return StaffRead.model_validate(staff, from_attributes=True)


async def read_staff(session: AsyncSession, staff_id: uuid.UUID) -> StaffRead:
    staff = await store.get_staff(session, staff_id)
    if staff is None:
        raise StaffNotFound()
    return StaffRead.model_validate(staff, from_attributes=True)
