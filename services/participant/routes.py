from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from services.participant import directory, service, store
from services.participant.deps import KeyringDep
from services.participant.errors import OrganisationNotFound, ParticipantNotFound
from services.participant.schemas import (
    OrganisationList,
    OrganisationRead,
    ParticipantCreate,
    ParticipantLookup,
    ParticipantRead,
    ParticipantUpdate,
    StaffRead,
    UnitList,
    UnitRead,
)
from shared.db import SessionDep
from shared.internal_auth import CallerDep, require_internal_caller
from shared.problems import PreconditionRequired, problem_responses

# Tells the gateway whether the calling organisation has registered the participant;
# the gateway's personvern decision uses it, and it never leaves the gateway.
RELATIONSHIP_HEADER = "Broen-Caller-Relationship"

router = APIRouter(
    prefix="/api/v1/participants",
    tags=["participants"],
    dependencies=[Depends(require_internal_caller)],
    responses=problem_responses(401, 403, 404, 422),
)


def _answer(view: service.ParticipantView, status_code: int = 200) -> Response:
    # Serialised here, once: returning the model would have FastAPI validate it again.
    headers = {
        "ETag": view.etag,
        RELATIONSHIP_HEADER: "registered" if view.registered_by_caller else "none",
    }
    if status_code == 201:
        headers["Location"] = f"/api/v1/participants/{view.read.id}"
    return Response(
        view.read.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


@router.post(
    "",
    status_code=201,
    response_model=ParticipantRead,
    responses={200: {"model": ParticipantRead}, **problem_responses(409)},
)
async def register_participant(
    data: ParticipantCreate, session: SessionDep, keyring: KeyringDep, caller: CallerDep
) -> Response:
    """Register a participant, or link your organisation to one already known to Broen."""
    view, newly_registered = await service.register(session, keyring, caller, data)
    return _answer(view, 201 if newly_registered else 200)


@router.post("/lookup", response_model=ParticipantRead)
async def lookup_participant(
    data: ParticipantLookup, session: SessionDep, keyring: KeyringDep, caller: CallerDep
) -> Response:
    """Find a participant by national id, given in the body so it never appears in a URL."""
    participant_id = await service.find(session, keyring, data.national_id)
    if participant_id is None:
        raise ParticipantNotFound()
    return _answer(await service.view(session, keyring, caller, participant_id))


@router.get("/{participant_id}", response_model=ParticipantRead)
async def read_participant(
    participant_id: uuid.UUID, session: SessionDep, keyring: KeyringDep, caller: CallerDep
) -> Response:
    """Read one participant."""
    return _answer(await service.view(session, keyring, caller, participant_id))


@router.patch(
    "/{participant_id}", response_model=ParticipantRead, responses=problem_responses(412, 428)
)
async def update_participant(
    participant_id: uuid.UUID,
    data: ParticipantUpdate,
    session: SessionDep,
    keyring: KeyringDep,
    caller: CallerDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Change your organisation's own values; needs If-Match with the ETag you read."""
    if if_match is None:
        raise PreconditionRequired("Send If-Match with the ETag of the participant you read.")
    view = await service.update(
        session, keyring, caller, participant_id, data, if_match.strip().removeprefix("W/")
    )
    return _answer(view)


organisations = APIRouter(
    prefix="/api/v1/organisations",
    tags=["organisations"],
    dependencies=[Depends(require_internal_caller)],
    responses=problem_responses(401, 404),
)


@organisations.get("")
async def list_organisations(session: SessionDep) -> OrganisationList:
    """The organisations registered in Broen (no personal data)."""
    found = await store.list_organisations(session)
    return OrganisationList(
        items=[OrganisationRead.model_validate(o, from_attributes=True) for o in found]
    )


@organisations.get("/{orgnr}")
async def read_organisation(orgnr: str, session: SessionDep) -> OrganisationRead:
    """One organisation by organisasjonsnummer."""
    found = await store.get_organisation(session, orgnr)
    if found is None:
        raise OrganisationNotFound(f"No organisation {orgnr} is registered.")
    return OrganisationRead.model_validate(found, from_attributes=True)


units = APIRouter(
    prefix="/api/v1/units",
    tags=["directory"],
    dependencies=[Depends(require_internal_caller)],
    responses=problem_responses(401),
)


@units.get("")
async def list_units(session: SessionDep, caller: CallerDep) -> UnitList:
    """Your organisation's units, with their inbox handles (no personal data)."""
    found = await store.list_units(session, orgnr=caller.orgnr or "")
    return UnitList(items=[UnitRead.model_validate(u, from_attributes=True) for u in found])


# Read by the gateway when a system asks for a token on behalf of a staff member;
# never routed to the public.
internal = APIRouter(
    prefix="/internal/v1",
    tags=["internal"],
    dependencies=[Depends(require_internal_caller)],
    responses=problem_responses(401, 404),
)


@internal.get("/staff/{staff_id}")
async def read_staff(staff_id: uuid.UUID, session: SessionDep) -> StaffRead:
    """One staff member: organisation, unit and roles."""
    return await directory.read_staff(session, staff_id)
