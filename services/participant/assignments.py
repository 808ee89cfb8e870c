"""Assignments (who has which role for a participant, with history) and programme
participation. An organisation records only its own: its staff, its units, its programmes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.participant import store
from services.participant.errors import (
    AssignmentConflict,
    NotYourOrganisation,
    ProgrammeNotFound,
)
from services.participant.models import (
    Assignment,
    Organisation,
    ProgrammeParticipation,
)
from services.participant.schemas import (
    AssignmentCreate,
    AssignmentRead,
    ProgrammeCreate,
    ProgrammeRead,
    ProgrammeUpdate,
)
from services.participant.service import (
    caller_organisation,
    now_utc,
    participant_event,
    registered_participant,
)
from shared.internal_auth import CallerContext
from shared.problems import ValidationProblem


async def assign(
    session: AsyncSession,
    organisation: Organisation,
    participant_id: uuid.UUID,
    data: AssignmentCreate,
    *,
    source_event_id: uuid.UUID | None = None,
) -> AssignmentRead:
    """Start an assignment; the open one in the same role from the same organisation ends
    when this one starts. Used by the route and by a `veileder.tildelt` timeline event."""
    await registered_participant(session, participant_id, organisation.orgnr)
    now = now_utc()
    starts = data.valid_from or now
    unit_id = await _assignee_unit(session, organisation, data)
    previous = await store.open_assignment(
        session, participant_id=participant_id, orgnr=organisation.orgnr, role=data.role
    )
    if previous is not None:
        if starts <= previous.valid_from:
            raise ValidationProblem(
                "valid_from must be after the start of the current assignment in this role.",
                errors=[{"field": "valid_from", "message": "before the current assignment"}],
            )
        previous.valid_to = starts
        await session.flush()
    assignment = Assignment(
        id=uuid.uuid4(),
        participant_id=participant_id,
        orgnr=organisation.orgnr,
        role=data.role,
        staff_id=data.staff_id,
        unit_id=unit_id,
        valid_from=starts,
        valid_to=None,
        recorded_at=now,
        source_event_id=source_event_id,
    )
    if not await store.add_assignment(session, assignment):
        raise AssignmentConflict()
    await participant_event(
        session,
        "assignment.started",
        participant_id,
        {
            "participant_id": str(participant_id),
            "assignment_id": str(assignment.id),
            "orgnr": organisation.orgnr,
            "role": data.role,
            "unit_id": str(unit_id),
            "staff_id": str(data.staff_id) if data.staff_id else None,
            "ended_assignment_id": str(previous.id) if previous else None,
            "valid_from": starts.isoformat(),
        },
    )
    return AssignmentRead.model_validate(assignment, from_attributes=True)


async def _assignee_unit(
    session: AsyncSession, organisation: Organisation, data: AssignmentCreate
) -> uuid.UUID:
    """The unit the assignment belongs to; refuses staff and units of other organisations."""
    if data.staff_id is not None:
        staff = await store.get_staff(session, data.staff_id)
        if staff is None or staff.orgnr != organisation.orgnr:
            raise NotYourOrganisation("An organisation assigns only its own staff.")
        if data.role not in staff.roles:
            raise ValidationProblem(
                f"The staff member does not hold the role '{data.role}'.",
                errors=[{"field": "role", "message": "not a role of this staff member"}],
            )
        return staff.unit_id
    assert data.unit_id is not None
    unit = await store.get_unit(session, data.unit_id)
    if unit is None or unit.orgnr != organisation.orgnr:
        raise NotYourOrganisation("An organisation assigns only its own units.")
    return unit.id


async def create_assignment(
    session: AsyncSession, caller: CallerContext, participant_id: uuid.UUID, data: AssignmentCreate
) -> AssignmentRead:
    organisation = await caller_organisation(session, caller)
    return await assign(session, organisation, participant_id, data)


async def list_assignments(
    session: AsyncSession,
    caller: CallerContext,
    participant_id: uuid.UUID,
    *,
    role: str | None,
    at: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[AssignmentRead]:
    """Every organisation's assignments; what the caller may see is the gateway's decision."""
    organisation = await caller_organisation(session, caller)
    await registered_participant(session, participant_id, organisation.orgnr)
    found = await store.list_assignments(
        session, participant_id, orgnr=None, role=role, at=at, after=after, limit=limit
    )
    return [AssignmentRead.model_validate(a, from_attributes=True) for a in found]


async def add_programme(
    session: AsyncSession, caller: CallerContext, participant_id: uuid.UUID, data: ProgrammeCreate
) -> ProgrammeRead:
    organisation = await caller_organisation(session, caller)
    await registered_participant(session, participant_id, organisation.orgnr)
    participation = ProgrammeParticipation(
        id=uuid.uuid4(),
        participant_id=participant_id,
        orgnr=organisation.orgnr,
        programme=data.programme,
        starts_on=data.starts_on,
        ends_on=data.ends_on,
        status=data.status,
        recorded_at=now_utc(),
    )
    await store.add_programme(session, participation)
    await _programme_event(session, "programme.recorded", participation)
    return ProgrammeRead.model_validate(participation, from_attributes=True)


async def update_programme(
    session: AsyncSession,
    caller: CallerContext,
    participant_id: uuid.UUID,
    participation_id: uuid.UUID,
    data: ProgrammeUpdate,
) -> ProgrammeRead:
    organisation = await caller_organisation(session, caller)
    participation = await store.get_programme(session, participation_id)
    if (
        participation is None
        or participation.participant_id != participant_id
        or participation.orgnr != organisation.orgnr
    ):
        raise ProgrammeNotFound("Your organisation has no such programme participation.")
    changes = data.model_dump(exclude_unset=True)
    if "status" in changes and changes["status"] is None:
        raise ValidationProblem("status cannot be removed.", errors=[{"field": "status"}])
    for field, value in changes.items():
        setattr(participation, field, value)
    if participation.ends_on is not None and participation.ends_on < participation.starts_on:
        raise ValidationProblem("ends_on is before starts_on.", errors=[{"field": "ends_on"}])
    await session.flush()
    await _programme_event(session, "programme.updated", participation)
    return ProgrammeRead.model_validate(participation, from_attributes=True)


async def list_programmes(
    session: AsyncSession,
    caller: CallerContext,
    participant_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ProgrammeRead]:
    organisation = await caller_organisation(session, caller)
    await registered_participant(session, participant_id, organisation.orgnr)
    found = await store.list_programmes(
        session, participant_id, orgnr=None, after=after, limit=limit
    )
    return [ProgrammeRead.model_validate(p, from_attributes=True) for p in found]


async def _programme_event(
    session: AsyncSession, type: str, participation: ProgrammeParticipation
) -> None:
    await participant_event(
        session,
        type,
        participation.participant_id,
        {
            "participant_id": str(participation.participant_id),
            "participation_id": str(participation.id),
            "orgnr": participation.orgnr,
            "programme": participation.programme,
            "status": participation.status,
        },
    )
