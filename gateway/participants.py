"""Participant routes at the gateway. Typed: the upstream answer is parsed into the
resource's model, decided and projected by the personvern policy, the decision written to
the audit log, and only then is what the policy released sent.

Every route that answers with participant data needs a declared purpose (Broen-Purpose).
Writes of assignments, programme places and events answer with the caller's own record.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel

from gateway.clients import ParticipantAnswer, ParticipantClient, ParticipantsDep
from gateway.deps import CallerDep, require_scope
from gateway.personvern import PersonvernDep, PurposeDep
from gateway.policy import (
    Grants,
    decide_events,
    decide_participant,
    decide_records,
    gate_reason,
    project_events,
    project_participant,
    project_records,
    subject_of,
    withheld_of,
)
from gateway.proxy import stream_through
from gateway.views import (
    AssignmentViewList,
    ProgrammeViewList,
    TimelineView,
)
from services.participant.catalogue import EventCatalogue
from services.participant.errors import ParticipantNotFound
from services.participant.schemas import (
    AssignmentCreate,
    AssignmentPage,
    AssignmentRead,
    DecisionFacts,
    EventBatch,
    EventBatchResult,
    EventCreate,
    EventRead,
    GuardianCreate,
    GuardianRead,
    OrganisationList,
    OrganisationRead,
    ParticipantCreate,
    ParticipantLookup,
    ParticipantRead,
    ParticipantUpdate,
    ProgrammeCreate,
    ProgrammePage,
    ProgrammeRead,
    ProgrammeUpdate,
    TimelinePage,
    UnitList,
)
from shared.app import json_response
from shared.internal_auth import CallerContext
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit
from shared.problems import problem_responses
from shared.vocabulary import Role

# The pages of records organisations make about a participant, with the decision's facts.
Page = TypeVar("Page", AssignmentPage, ProgrammePage, TimelinePage)

Reader = Annotated[CallerContext, Depends(require_scope("participants:read"))]
Writer = Annotated[CallerContext, Depends(require_scope("participants:write"))]
EventWriter = Annotated[CallerContext, Depends(require_scope("events:write"))]

router = APIRouter(
    prefix="/api/v1",
    # 400: a missing or refused Broen-Purpose, on the routes that answer with participant data.
    responses=problem_responses(400, 401, 403, 422, 503),
)


async def _decided(
    personvern: PersonvernDep,
    caller: CallerContext,
    purpose: str,
    answer: ParticipantAnswer,
    *,
    write: bool = False,
    grants: Grants | None = None,
) -> Response:
    """The participant as the policy lets this caller see it, once the decision is in the
    audit log. A read of which nothing is released is the 404 of an unknown participant; a
    committed write still answers with the id, and says why nothing is shown."""
    participant = answer.participant
    context = await personvern.context(
        caller, purpose, participant.id, answer.relationships, subject_of(participant), grants
    )
    decision = decide_participant(personvern.policy, context, participant)
    await personvern.record(context, participant.id, [decision])
    projected = project_participant(participant, decision)
    if projected is None:
        if not write:
            raise ParticipantNotFound()
        projected = ParticipantRead.model_construct(
            id=participant.id, provenance={}, withheld=withheld_of(decision)
        )
    headers = {"ETag": answer.etag} if answer.etag else {}
    if answer.status == 201:
        headers["Location"] = f"/api/v1/participants/{projected.id}"
    return Response(
        # Only what was set: a withheld field is absent, not null.
        projected.model_dump_json(exclude_unset=True),
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
    data: ParticipantCreate,
    request: Request,
    caller: Writer,
    purpose: PurposeDep,
    personvern: PersonvernDep,
    client: ParticipantsDep,
) -> Response:
    """Register a participant, or link your organisation to one already known to Broen.

    The answer has the same shape whether or not another organisation knew the person: what
    the policy lets you see for the purpose (your organisation's values need a relationship
    — an assignment or a programme place — like any read).
    """
    answer = await client.register(caller, await request.body())
    return await _decided(personvern, caller, purpose, answer, write=True)


@router.post(
    "/participants/lookup",
    tags=["participants"],
    response_model=ParticipantRead,
    responses=problem_responses(404),
)
async def lookup_participant(
    data: ParticipantLookup,
    request: Request,
    caller: Reader,
    purpose: PurposeDep,
    personvern: PersonvernDep,
    client: ParticipantsDep,
) -> Response:
    """Find a participant by national id, sent in the body so it never appears in a URL."""
    answer = await client.lookup(caller, await request.body())
    return await _decided(personvern, caller, purpose, answer)


@router.get(
    "/participants/{participant_id}",
    tags=["participants"],
    response_model=ParticipantRead,
    responses=problem_responses(404),
)
async def read_participant(
    participant_id: uuid.UUID,
    caller: Reader,
    purpose: PurposeDep,
    personvern: PersonvernDep,
    client: ParticipantsDep,
) -> Response:
    """Read one participant: the fields you may see, and which are withheld and why."""
    answer, grants = await personvern.alongside_grants(
        participant_id, client.read(caller, participant_id)
    )
    return await _decided(personvern, caller, purpose, answer, grants=grants)


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
    purpose: PurposeDep,
    personvern: PersonvernDep,
    client: ParticipantsDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Change your organisation's own values; send If-Match with the ETag you read."""
    answer = await client.update(caller, participant_id, await request.body(), if_match)
    return await _decided(personvern, caller, purpose, answer, write=True)


def _query(**values: object) -> dict[str, str]:
    """Validated query parameters for the upstream call (never the raw query string)."""
    return {name: str(value) for name, value in values.items() if value is not None}


async def _write(
    client: ParticipantClient,
    model: type[BaseModel],
    method: str,
    path: str,
    caller: CallerContext,
    request: Request,
    headers: dict[str, str] | None = None,
    read_timeout_seconds: float | None = None,
) -> Response:
    """A write about a participant; the answer is the caller's own record."""
    written, status = await client.fetch(
        model,
        method,
        path,
        caller,
        content=await request.body(),
        headers=headers,
        read_timeout_seconds=read_timeout_seconds,
    )
    return json_response(written, status)


async def _page(
    client: ParticipantClient,
    personvern: PersonvernDep,
    model: type[Page],
    participant_id: uuid.UUID,
    path: str,
    caller: CallerContext,
    purpose: str,
    **params: object,
) -> Response:
    """A page of the records organisations made about a participant, decided record by
    record and audited as one decision about the participant. A caller who may see nothing
    of the participant gets the 404 of an unknown one."""
    (page, _), grants = await personvern.alongside_grants(
        participant_id, client.fetch(model, "GET", path, caller, params=_query(**params))
    )
    facts: DecisionFacts = page.facts
    subject = subject_of(facts)
    context = await personvern.context(
        caller, purpose, participant_id, facts.relationships, subject, grants
    )
    policy = personvern.policy
    if isinstance(page, TimelinePage):
        decisions = decide_events(
            policy, context, page.items, payload_categories=facts.payload_categories
        )
    else:
        decisions = decide_records(policy, context, page.items, agency_types=facts.agency_types)
    await personvern.record(context, participant_id, decisions)
    if gate_reason(policy, context) is not None:
        raise ParticipantNotFound()
    if isinstance(page, TimelinePage):
        projected = project_events(
            policy,
            context,
            page.items,
            payload_categories=facts.payload_categories,
            routing_handles=facts.routing_handles,
            decisions=decisions,
        )
    else:
        projected = project_records(
            policy,
            context,
            page.items,
            agency_types=facts.agency_types,
            routing_handles=facts.routing_handles,
            decisions=decisions,
        )
    body = {
        "items": [
            {**item.values, "withheld": [w.model_dump() for w in item.withheld]}
            for item in projected
        ],
        # The cursor walks the records, shown or not: a page may hold fewer than `limit`.
        "next_cursor": page.next_cursor,
    }
    return Response(json.dumps(body), media_type="application/json")


@router.post(
    "/participants/{participant_id}/assignments",
    tags=["assignments"],
    status_code=201,
    response_model=AssignmentRead,
    responses=problem_responses(404, 409),
)
async def create_assignment(
    participant_id: uuid.UUID,
    data: AssignmentCreate,
    request: Request,
    caller: Writer,
    client: ParticipantsDep,
) -> Response:
    """Assign one of your staff, or a unit's inbox, to a role for the participant.

    The previous assignment in that role from your organisation ends when this one starts.
    """
    return await _write(
        client,
        AssignmentRead,
        "POST",
        f"/api/v1/participants/{participant_id}/assignments",
        caller,
        request,
    )


@router.post(
    "/participants/{participant_id}/guardians",
    tags=["participants"],
    status_code=201,
    response_model=GuardianRead,
    responses={
        200: {"model": GuardianRead, "description": "Already recorded"},
        **problem_responses(404),
    },
)
async def add_guardian(
    participant_id: uuid.UUID,
    data: GuardianCreate,
    request: Request,
    caller: Writer,
    client: ParticipantsDep,
) -> Response:
    """Record a guardian of a minor participant, who may then act for them under
    /api/v1/me/... until their 18th birthday. The guardian's national id is never returned."""
    return await _write(
        client,
        GuardianRead,
        "POST",
        f"/api/v1/participants/{participant_id}/guardians",
        caller,
        request,
    )


@router.get(
    "/participants/{participant_id}/assignments",
    tags=["assignments"],
    response_model=AssignmentViewList,
    responses=problem_responses(404),
)
async def list_assignments(
    participant_id: uuid.UUID,
    caller: Reader,
    purpose: PurposeDep,
    personvern: PersonvernDep,
    client: ParticipantsDep,
    role: Role | None = None,
    at: AwareDatetime | None = Query(None, description="Only those in force at this moment."),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """Assignments, current and past, oldest first, as the policy lets you see them."""
    return await _page(
        client,
        personvern,
        AssignmentPage,
        participant_id,
        f"/api/v1/participants/{participant_id}/assignments",
        caller,
        purpose,
        role=role,
        at=at.isoformat() if at else None,
        limit=limit,
        cursor=cursor,
    )


@router.post(
    "/participants/{participant_id}/programmes",
    tags=["programmes"],
    status_code=201,
    response_model=ProgrammeRead,
    responses=problem_responses(404),
)
async def add_programme(
    participant_id: uuid.UUID,
    data: ProgrammeCreate,
    request: Request,
    caller: Writer,
    client: ParticipantsDep,
) -> Response:
    """Record the participant's place in one of your organisation's programmes."""
    return await _write(
        client,
        ProgrammeRead,
        "POST",
        f"/api/v1/participants/{participant_id}/programmes",
        caller,
        request,
    )


@router.get(
    "/participants/{participant_id}/programmes",
    tags=["programmes"],
    response_model=ProgrammeViewList,
    responses=problem_responses(404),
)
async def list_programmes(
    participant_id: uuid.UUID,
    caller: Reader,
    purpose: PurposeDep,
    personvern: PersonvernDep,
    client: ParticipantsDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """Programme participation, oldest first, as the policy lets you see it."""
    return await _page(
        client,
        personvern,
        ProgrammePage,
        participant_id,
        f"/api/v1/participants/{participant_id}/programmes",
        caller,
        purpose,
        limit=limit,
        cursor=cursor,
    )


@router.patch(
    "/participants/{participant_id}/programmes/{participation_id}",
    tags=["programmes"],
    response_model=ProgrammeRead,
    responses=problem_responses(404),
)
async def update_programme(
    participant_id: uuid.UUID,
    participation_id: uuid.UUID,
    data: ProgrammeUpdate,
    request: Request,
    caller: Writer,
    client: ParticipantsDep,
) -> Response:
    """Change the status or end date of your organisation's programme participation."""
    return await _write(
        client,
        ProgrammeRead,
        "PATCH",
        f"/api/v1/participants/{participant_id}/programmes/{participation_id}",
        caller,
        request,
    )


@router.post(
    "/participants/{participant_id}/events",
    tags=["timeline"],
    status_code=201,
    response_model=EventRead,
    responses=problem_responses(404, 409),
)
async def record_event(
    participant_id: uuid.UUID,
    data: EventCreate,
    request: Request,
    caller: EventWriter,
    client: ParticipantsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="A retry with the same key and body returns the first result; "
            "the same key with another body is a 409 problem.",
        ),
    ] = None,
) -> Response:
    """Record an event on the participant's timeline.

    The type must be in the event catalogue (GET /api/v1/event-types) and owned by your
    agency type, and the payload must hold the fields the type declares. Events are never
    changed: a correction is a new event whose `corrects` names the earlier one.
    """
    return await _write(
        client,
        EventRead,
        "POST",
        f"/api/v1/participants/{participant_id}/events",
        caller,
        request,
        {"Idempotency-Key": idempotency_key} if idempotency_key is not None else None,
    )


# A batch of 1,000 takes well under a second, but one full of `veileder.tildelt` (each
# an assignment) takes seconds: the caller would otherwise get a 503 while it commits.
BATCH_TIMEOUT_SECONDS = 60.0


@router.post("/events:batch", tags=["timeline"], response_model=EventBatchResult)
async def record_events(
    data: EventBatch, request: Request, caller: EventWriter, client: ParticipantsDep
) -> Response:
    """Record up to 1,000 timeline events in one request, each accepted or refused on its own.

    Each item names its participant by `participant_id` or by `national_id` (one you
    registered; in the body only, never returned) and carries its own `idempotency_key`.
    Every item is held to the rules of POST /api/v1/participants/{id}/events and answered
    in `items`, in request order: 201 recorded, 200 a resend of an event recorded before
    with the same key and content, or the status and problem the single push would give
    (a malformed item is a 422 of its own). A refused item writes nothing and never stops
    the others; a 200 answer means every accepted item is committed. An empty list, more
    than 1,000 items or another shape of body is a 422 problem, and nothing is recorded.
    """
    return await _write(
        client,
        EventBatchResult,
        "POST",
        "/api/v1/participants/events:batch",
        caller,
        request,
        read_timeout_seconds=BATCH_TIMEOUT_SECONDS,
    )


@router.get(
    "/participants/{participant_id}/timeline",
    tags=["timeline"],
    response_model=TimelineView,
    responses=problem_responses(404),
)
async def read_timeline(
    participant_id: uuid.UUID,
    caller: Reader,
    purpose: PurposeDep,
    personvern: PersonvernDep,
    client: ParticipantsDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """The participant's events in the order they happened, as the policy lets you see them."""
    return await _page(
        client,
        personvern,
        TimelinePage,
        participant_id,
        f"/api/v1/participants/{participant_id}/timeline",
        caller,
        purpose,
        limit=limit,
        cursor=cursor,
    )


@router.get("/event-types", tags=["timeline"], response_model=EventCatalogue)
async def list_event_types(request: Request, caller: CallerDep) -> Response:
    """The event catalogue: each type's owners, payload fields and their data categories."""
    upstream = request.app.state.participant_client.upstream
    return await stream_through(request, upstream, caller, "/api/v1/event-types")


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
async def read_organisation(
    orgnr: Annotated[str, Path(pattern=r"^\d{9}$", description="Nine digits.")],
    request: Request,
    caller: Reader,
) -> Response:
    """One organisation by organisasjonsnummer."""
    upstream = request.app.state.participant_client.upstream
    return await stream_through(request, upstream, caller, f"/api/v1/organisations/{orgnr}")
