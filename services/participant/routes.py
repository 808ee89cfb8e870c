from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response

from services.participant import service, store
from services.participant.deps import KeyringDep
from services.participant.errors import OrganisationNotFound, ParticipantNotFound
from services.participant.schemas import (
    OrganisationList,
    OrganisationRead,
    ParticipantCreate,
    ParticipantLookup,
    ParticipantRead,
    ParticipantUpdate,
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


def _answer(response: Response, view: service.ParticipantView) -> ParticipantRead:
    response.headers["ETag"] = view.etag
    response.headers[RELATIONSHIP_HEADER] = "registered" if view.registered_by_caller else "none"
    return view.read


@router.post("", status_code=201, responses=problem_responses(409))
async def register_participant(
    data: ParticipantCreate,
    response: Response,
    session: SessionDep,
    keyring: KeyringDep,
    caller: CallerDep,
) -> ParticipantRead:
    """Register a participant, or link your organisation to one already known to Broen."""
    view, newly_registered = await service.register(session, keyring, caller, data)
    if not newly_registered:
        response.status_code = 200
    response.headers["Location"] = f"/api/v1/participants/{view.read.id}"
    return _answer(response, view)


@router.post("/lookup")
async def lookup_participant(
    data: ParticipantLookup,
    response: Response,
    session: SessionDep,
    keyring: KeyringDep,
    caller: CallerDep,
) -> ParticipantRead:
    """Find a participant by national id, given in the body so it never appears in a URL."""
    participant_id = await service.find(session, keyring, data.national_id)
    if participant_id is None:
        raise ParticipantNotFound()
    return _answer(response, await service.view(session, keyring, caller, participant_id))


@router.get("/{participant_id}")
async def read_participant(
    participant_id: uuid.UUID,
    response: Response,
    session: SessionDep,
    keyring: KeyringDep,
    caller: CallerDep,
) -> ParticipantRead:
    """Read one participant."""
    return _answer(response, await service.view(session, keyring, caller, participant_id))


@router.patch("/{participant_id}", responses=problem_responses(412, 428))
async def update_participant(
    participant_id: uuid.UUID,
    data: ParticipantUpdate,
    response: Response,
    session: SessionDep,
    keyring: KeyringDep,
    caller: CallerDep,
    if_match: Annotated[str | None, Header()] = None,
) -> ParticipantRead:
    """Change your organisation's own values; needs If-Match with the ETag you read."""
    if if_match is None:
        raise PreconditionRequired("Send If-Match with the ETag of the participant you read.")
    view = await service.update(
        session, keyring, caller, participant_id, data, if_match.strip().removeprefix("W/")
    )
    return _answer(response, view)


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
