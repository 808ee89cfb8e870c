"""Message routing from the assignments: who holds a role for a participant now, which
slots a staff member holds, and a unit addressed directly. Read by the gateway (when a
message is sent) and by the messaging service (inboxes, handovers)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from services.participant import store
from services.participant.errors import StaffNotFound, UnknownUnit
from services.participant.schemas import Caseload, Holder, RouteAnswer, RouteQuery, Slot
from services.participant.service import decision_facts, now_utc
from shared.crypto import Keyring
from shared.internal_auth import CallerContext
from shared.vocabulary import UNIT_INBOX_ROLES


def _holder(row: RowMapping) -> Holder:
    return Holder(
        participant_id=row["participant_id"],
        orgnr=row["orgnr"],
        agency_type=row["agency_type"],
        role=row["role"],
        unit_id=row["unit_id"],
        inbox_handle=row["inbox_handle"],
        routing_handle=row["routing_handle"],
        staff_id=row["staff_id"],
        staff_name=row["name"],
        since=row["valid_from"],
    )


async def route(
    session: AsyncSession,
    keyring: Keyring,
    caller: CallerContext,
    participant_id: uuid.UUID,
    query: RouteQuery,
) -> RouteAnswer:
    """The recipient of a message the caller sends about the participant, with the facts
    of the caller's relationship (an unregistered participant is the usual 404)."""
    recipient: Holder | None
    if query.role is None:
        found = await store.unit_with_organisation(
            session, unit_id=query.unit_id, handle=query.unit_handle
        )
        if found is None:
            raise UnknownUnit()
        unit, agency_type = found
        recipient = Holder(
            participant_id=participant_id,
            orgnr=unit.orgnr,
            agency_type=agency_type,
            role=None,
            unit_id=unit.id,
            inbox_handle=unit.inbox_handle,
            routing_handle=unit.routing_handle,
            staff_id=None,
            staff_name=None,
            since=None,
        )
    else:
        rows = await store.current_holders(
            session,
            now=now_utc(),
            participant_id=participant_id,
            role=query.role,
            orgnr=query.orgnr,
        )
        # Several organisations may hold the role (two schools): the latest assignment.
        recipient = _holder(rows[0]) if rows else None
    orgnrs = {caller.orgnr or ""} | ({recipient.orgnr} if recipient else set())
    facts = await decision_facts(session, keyring, caller, participant_id, orgnrs=orgnrs)
    return RouteAnswer(recipient=recipient, facts=facts)


async def holders(session: AsyncSession, slots: Sequence[Slot]) -> list[Holder]:
    wanted = [(s.participant_id, s.orgnr, s.role) for s in slots]
    if not wanted:
        return []
    rows = await store.current_holders(session, now=now_utc(), slots=wanted)
    seen: set[tuple[uuid.UUID, str, str]] = set()
    found = []
    for row in rows:  # latest first: the first row of a slot is its holder
        key = (row["participant_id"], row["orgnr"], row["role"])
        if key not in seen:
            seen.add(key)
            found.append(_holder(row))
    return found


async def caseload(session: AsyncSession, staff_id: uuid.UUID) -> Caseload:
    staff = await store.get_staff(session, staff_id)
    if staff is None:
        raise StaffNotFound()
    inbox_roles = bool(set(staff.roles) & set(UNIT_INBOX_ROLES))
    rows = await store.current_holders(
        session,
        now=now_utc(),
        staff_id=staff_id,
        inbox_of_unit=staff.unit_id if inbox_roles else None,
    )
    return Caseload(
        staff_id=staff.id,
        unit_id=staff.unit_id,
        inbox_roles=inbox_roles,
        holders=[_holder(row) for row in rows],
    )
