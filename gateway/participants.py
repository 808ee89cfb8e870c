"""Participant routes at the gateway. Typed: the upstream answer is parsed into the
resource's model, passed through the personvern hook, and only what it releases is sent."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response

from gateway.clients import ParticipantAnswer, ParticipantClient
from gateway.deps import require_scope
from gateway.personvern import project_participant
from gateway.proxy import stream_through
from services.participant.errors import ParticipantNotFound
from services.participant.schemas import (
    OrganisationList,
    OrganisationRead,
    ParticipantCreate,
    ParticipantLookup,
    ParticipantRead,
    ParticipantUpdate,
    UnitList,
)
from shared.internal_auth import CallerContext
from shared.problems import problem_responses

Reader = Annotated[CallerContext, Depends(require_scope("participants:read"))]
Writer = Annotated[CallerContext, Depends(require_scope("participants:write"))]

router = APIRouter(
    prefix="/api/v1",
    responses=problem_responses(401, 403, 422, 503),
)


async def participant_client(request: Request) -> ParticipantClient:
    client: ParticipantClient = request.app.state.participant_client
    return client


ClientDep = Annotated[ParticipantClient, Depends(participant_client)]


def _released(caller: CallerContext, answer: ParticipantAnswer) -> Response:
    projected = project_participant(
        caller, answer.participant, has_relationship=answer.registered_by_caller
    )
    if projected is None:
        raise ParticipantNotFound()
    withheld = {w.field for w in projected.withheld}
    headers = {"ETag": answer.etag} if answer.etag else {}
    if answer.status == 201:
        headers["Location"] = f"/api/v1/participants/{projected.id}"
    return Response(
        projected.model_dump_json(exclude=withheld),
        status_code=answer.status,
        media_type="application/json",
        headers=headers,
    )


@router.post(
    "/participants",
    tags=["participants"],
    status_code=201,
    response_model=ParticipantRead,
    responses={200: {"model": ParticipantRead, "description": "Already registered by you"}},
)
async def register_participant(
    data: ParticipantCreate, request: Request, caller: Writer, client: ClientDep
) -> Response:
    """Register a participant, or link your organisation to one already known to Broen.

    The answer has the same shape whether or not another organisation knew the person.
    """
    return _released(caller, await client.register(caller, await request.body()))


@router.post(
    "/participants/lookup",
    tags=["participants"],
    response_model=ParticipantRead,
    responses=problem_responses(404),
)
async def lookup_participant(
    data: ParticipantLookup, request: Request, caller: Reader, client: ClientDep
) -> Response:
    """Find a participant by national id, sent in the body so it never appears in a URL."""
    return _released(caller, await client.lookup(caller, await request.body()))


@router.get(
    "/participants/{participant_id}",
    tags=["participants"],
    response_model=ParticipantRead,
    responses=problem_responses(404),
)
async def read_participant(
    participant_id: uuid.UUID, caller: Reader, client: ClientDep
) -> Response:
    """Read one participant: the fields you may see, and which are withheld and why."""
    return _released(caller, await client.read(caller, participant_id))


@router.patch(
    "/participants/{participant_id}",
    tags=["participants"],
    response_model=ParticipantRead,
    responses=problem_responses(404, 412, 428),
)
async def update_participant(
    participant_id: uuid.UUID,
    data: ParticipantUpdate,
    request: Request,
    caller: Writer,
    client: ClientDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Change your organisation's own values; send If-Match with the ETag you read."""
    answer = await client.update(caller, participant_id, await request.body(), if_match)
    return _released(caller, answer)


@router.get("/organisations", tags=["organisations"], response_model=OrganisationList)
async def list_organisations(request: Request, caller: Reader) -> Response:
    """The organisations registered in Broen."""
    upstream = request.app.state.participant_client.upstream
    return await stream_through(request, upstream, caller, "/api/v1/organisations")


@router.get("/units", tags=["directory"], response_model=UnitList)
async def list_units(request: Request, caller: Reader) -> Response:
    """Your organisation's units and their inbox handles."""
    upstream = request.app.state.participant_client.upstream
    return await stream_through(request, upstream, caller, "/api/v1/units")


@router.get(
    "/organisations/{orgnr}",
    tags=["organisations"],
    response_model=OrganisationRead,
    responses=problem_responses(404),
)
async def read_organisation(orgnr: str, request: Request, caller: Reader) -> Response:
    """One organisation by organisasjonsnummer."""
    upstream = request.app.state.participant_client.upstream
    return await stream_through(request, upstream, caller, f"/api/v1/organisations/{orgnr}")
