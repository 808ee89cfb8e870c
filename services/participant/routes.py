from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import AwareDatetime

from services.participant import (
    assignments,
    directory,
    guardians,
    routing,
    service,
    store,
    timeline,
)
from services.participant.deps import CatalogueDep
from services.participant.errors import OrganisationNotFound, ParticipantNotFound
from services.participant.schemas import (
    AssignmentCreate,
    AssignmentPage,
    AssignmentRead,
    Caseload,
    CitizenIdentity,
    CitizenLookup,
    EventBatch,
    EventBatchResult,
    EventCreate,
    EventFacts,
    EventFactsQuery,
    EventRead,
    GuardianCreate,
    GuardianRead,
    HoldersAnswer,
    HoldersQuery,
    OrganisationList,
    OrganisationRead,
    ParticipantCreate,
    ParticipantLookup,
    ParticipantRead,
    ParticipantUpdate,
    ProgrammeCreate,
    ProgrammePage,
    ProgrammeRead,
    ProgrammeStatistics,
    ProgrammeUpdate,
    RouteAnswer,
    RouteQuery,
    StaffRead,
    StatisticsQuery,
    TimelinePage,
    UnitList,
    UnitRead,
)
from shared.app import KeyringDep, json_response
from shared.db import ReadSessionDep, SessionDep
from shared.internal_auth import CallerDep, require_internal_caller
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit, moment_after, next_cursor
from shared.problems import PreconditionRequired, problem_responses
from shared.vocabulary import Role

# The caller's relationships to the participant (registered, assigned, same_unit,
# programme), for the gateway's personvern decision; it never leaves the gateway.
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
        RELATIONSHIP_HEADER: " ".join(sorted(view.relationships)) or "none",
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


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="A retry with the same key and body returns the first result.",
    ),
]


@router.post("/{participant_id}/assignments", status_code=201, responses=problem_responses(409))
async def create_assignment(
    participant_id: uuid.UUID, data: AssignmentCreate, session: SessionDep, caller: CallerDep
) -> AssignmentRead:
    """Assign one of your staff (or a unit's inbox) to a role; ends the previous one."""
    return await assignments.create_assignment(session, caller, participant_id, data)


@router.get("/{participant_id}/assignments")
async def list_assignments(
    participant_id: uuid.UUID,
    session: SessionDep,
    keyring: KeyringDep,
    caller: CallerDep,
    role: Role | None = None,
    at: AwareDatetime | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> AssignmentPage:
    """Assignments, current and past, oldest first; `at` gives those in force then."""
    items = await assignments.list_assignments(
        session, caller, participant_id, role=role, at=at, after=moment_after(cursor), limit=limit
    )
    facts = await service.decision_facts(
        session,
        keyring,
        caller,
        participant_id,
        orgnrs={a.orgnr for a in items},
        unit_ids={a.unit_id for a in items},
    )
    return AssignmentPage(
        items=items, next_cursor=next_cursor(items, limit, "recorded_at"), facts=facts
    )


@router.post("/{participant_id}/route")
async def route_message(
    participant_id: uuid.UUID,
    data: RouteQuery,
    session: SessionDep,
    keyring: KeyringDep,
    caller: CallerDep,
) -> RouteAnswer:
    """Who a message the caller sends about the participant reaches now, with the facts the
    gateway decides it with."""
    return await routing.route(session, keyring, caller, participant_id, data)


@router.post("/{participant_id}/events", status_code=201, responses=problem_responses(409))
async def record_event(
    participant_id: uuid.UUID,
    data: EventCreate,
    session: SessionDep,
    keyring: KeyringDep,
    catalogue: CatalogueDep,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> EventRead:
    """Record an event of a catalogue type your agency type owns on the participant's timeline."""
    return await timeline.record(
        session,
        keyring,
        catalogue,
        caller,
        participant_id,
        data,
        idempotency_key=idempotency_key,
    )


@router.post("/events:batch", tags=["timeline"], response_model=EventBatchResult)
async def record_events(
    data: EventBatch,
    session: SessionDep,
    keyring: KeyringDep,
    catalogue: CatalogueDep,
    caller: CallerDep,
) -> Response:
    """Record up to 1,000 events, each accepted or refused on its own (a result per item)."""
    return json_response(
        await timeline.record_batch(session, keyring, catalogue, caller, data.items)
    )


@router.get("/{participant_id}/timeline")
async def read_timeline(
    participant_id: uuid.UUID,
    session: SessionDep,
    keyring: KeyringDep,
    catalogue: CatalogueDep,
    caller: CallerDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> TimelinePage:
    """The participant's events in the order they happened."""
    items = await timeline.timeline(
        session, keyring, caller, participant_id, after=moment_after(cursor), limit=limit
    )
    facts = await service.decision_facts(
        session,
        keyring,
        caller,
        participant_id,
        unit_ids=timeline.named_units(catalogue, items),
        payload_categories=timeline.payload_categories(catalogue, items),
    )
    return TimelinePage(
        items=items, next_cursor=next_cursor(items, limit, "occurred_at"), facts=facts
    )


@router.post("/{participant_id}/programmes", status_code=201)
async def add_programme(
    participant_id: uuid.UUID, data: ProgrammeCreate, session: SessionDep, caller: CallerDep
) -> ProgrammeRead:
    """Record the participant's place in one of your organisation's programmes."""
    return await assignments.add_programme(session, caller, participant_id, data)


@router.get("/{participant_id}/programmes")
async def list_programmes(
    participant_id: uuid.UUID,
    session: SessionDep,
    keyring: KeyringDep,
    caller: CallerDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ProgrammePage:
    """Programme participation, oldest first."""
    items = await assignments.list_programmes(
        session, caller, participant_id, after=moment_after(cursor), limit=limit
    )
    facts = await service.decision_facts(
        session, keyring, caller, participant_id, orgnrs={p.orgnr for p in items}
    )
    return ProgrammePage(
        items=items, next_cursor=next_cursor(items, limit, "recorded_at"), facts=facts
    )


@router.patch("/{participant_id}/programmes/{participation_id}")
async def update_programme(
    participant_id: uuid.UUID,
    participation_id: uuid.UUID,
    data: ProgrammeUpdate,
    session: SessionDep,
    caller: CallerDep,
) -> ProgrammeRead:
    """Change the status or end date of your organisation's programme participation."""
    return await assignments.update_programme(
        session, caller, participant_id, participation_id, data
    )


@router.post(
    "/{participant_id}/guardians", status_code=201, responses={200: {"model": GuardianRead}}
)
async def add_guardian(
    participant_id: uuid.UUID,
    data: GuardianCreate,
    session: SessionDep,
    keyring: KeyringDep,
    caller: CallerDep,
    response: Response,
) -> GuardianRead:
    """Record a guardian of a minor participant; the same guardian again answers 200."""
    guardian, created = await guardians.add_guardian(session, keyring, caller, participant_id, data)
    if not created:
        response.status_code = 200
    return guardian


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


event_types = APIRouter(
    prefix="/api/v1/event-types",
    tags=["timeline"],
    dependencies=[Depends(require_internal_caller)],
    responses=problem_responses(401),
)


@event_types.get("")
async def list_event_types(catalogue: CatalogueDep) -> Response:
    """The event catalogue: types, owners, payload fields and their categories."""
    return Response(catalogue.model_dump_json(exclude_none=True), media_type="application/json")


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


@internal.post("/citizens/identify")
async def identify_citizen(
    data: CitizenLookup, session: SessionDep, keyring: KeyringDep
) -> CitizenIdentity:
    """Who a citizen is to Broen, from the national id their identity provider vouches for."""
    return await guardians.identify(session, keyring, data.national_id)


@internal.post("/holders", response_model=HoldersAnswer)
async def read_holders(data: HoldersQuery, session: ReadSessionDep) -> Response:
    """The current holder of each (participant, organisation, role) slot that has one."""
    return json_response(HoldersAnswer(holders=await routing.holders(session, data.slots)))


@internal.get("/staff/{staff_id}/caseload", response_model=Caseload)
async def read_caseload(staff_id: uuid.UUID, session: SessionDep) -> Response:
    """The slots a staff member holds now, their own and their unit inbox's."""
    return json_response(await routing.caseload(session, staff_id))


@internal.post("/event-facts", response_model=EventFacts)
async def read_event_facts(
    data: EventFactsQuery,
    session: ReadSessionDep,
    keyring: KeyringDep,
    catalogue: CatalogueDep,
    caller: CallerDep,
) -> Response:
    """What the gateway projects a page of domain events for the caller with."""
    categories: dict[str, dict[str, str]] = {
        event_type: {name: field.category for name, field in spec.payload.items()}
        for event_type in data.event_types
        if (spec := catalogue.types.get(event_type)) is not None
    }
    return json_response(await service.event_facts(session, keyring, caller, data, categories))


@internal.get("/statistics/programmes", responses=problem_responses(422))
async def read_programme_statistics(
    query: Annotated[StatisticsQuery, Query()], session: ReadSessionDep, caller: CallerDep
) -> ProgrammeStatistics:
    """Your organisation's programme places starting in the period, counted, small counts
    suppressed."""
    return await service.programme_statistics(session, caller, query)
