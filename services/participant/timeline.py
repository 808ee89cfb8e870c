"""The participant's timeline: append-only events of the catalogue's types, each with its
source organisation, system and verification. Payloads are sealed with the participant's
data key. An organisation records only the types its agency type owns, about participants
it registered, and an Idempotency-Key makes a retry return the first result."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any

import pydantic_core
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.participant import store
from services.participant.assignments import assign
from services.participant.catalogue import EventCatalogue
from services.participant.errors import (
    EventConflict,
    EventTypeNotOwned,
    IdempotencyKeyReused,
    UnknownEventType,
)
from services.participant.models import Event, Organisation
from services.participant.schemas import AssignmentCreate, EventCreate, EventRead, EventSource
from services.participant.service import (
    caller_organisation,
    now_utc,
    open_data_key,
    participant_event,
    registered_participant,
)
from shared.crypto import Keyring, associated_data, open_sealed, seal
from shared.internal_auth import CallerContext
from shared.problems import ValidationProblem, validation_errors

# What an event type does besides being recorded, in the same transaction: if the action
# is refused, nothing is stored.
Effect = Callable[[AsyncSession, Organisation, Event, dict[str, Any]], Awaitable[None]]


async def record(
    session: AsyncSession,
    keyring: Keyring,
    catalogue: EventCatalogue,
    caller: CallerContext,
    participant_id: uuid.UUID,
    data: EventCreate,
    *,
    idempotency_key: str | None,
) -> EventRead:
    organisation = await caller_organisation(session, caller)
    request_hash = _request_hash(participant_id, data)
    if idempotency_key is not None:
        earlier = await store.find_event_by_key(
            session, orgnr=organisation.orgnr, idempotency_key=idempotency_key
        )
        if earlier is not None:
            return await _replay(session, keyring, earlier, request_hash)
    spec = catalogue.types.get(data.type)
    if spec is None:
        raise UnknownEventType()
    if organisation.agency_type not in spec.owners:
        raise EventTypeNotOwned()
    values = spec.check_payload(data.payload)
    found = await registered_participant(session, participant_id, organisation.orgnr)
    if data.corrects is not None:
        corrected = await store.get_event(session, data.corrects)
        if corrected is None or corrected.participant_id != participant_id:
            raise ValidationProblem(
                "corrects must name an earlier event of the same participant.",
                errors=[{"field": "corrects", "location": ["body", "corrects"], "code": "unknown"}],
            )
    event_id = uuid.uuid4()
    payload = pydantic_core.to_json(values)
    event = Event(
        id=event_id,
        participant_id=participant_id,
        type=data.type,
        occurred_at=data.occurred_at,
        recorded_at=now_utc(),
        source_orgnr=organisation.orgnr,
        source_agency_type=organisation.agency_type,
        source_system=data.source_system,
        verification=data.verification,
        payload_sealed=seal(
            open_data_key(keyring, participant_id, found), payload, _payload_aad(event_id)
        ),
        corrects=data.corrects,
        idempotency_key=idempotency_key,
        request_hash=request_hash if idempotency_key is not None else None,
    )
    if not await store.add_event(session, event):
        # Only a key conflicts: a concurrent request with it got there first, answer as it did.
        assert idempotency_key is not None
        earlier = await store.find_event_by_key(
            session, orgnr=organisation.orgnr, idempotency_key=idempotency_key
        )
        if earlier is None:  # gone meanwhile (its participant was shredded)
            raise EventConflict()
        return await _replay(session, keyring, earlier, request_hash)
    effect = EFFECTS.get(event.type)
    if effect is not None:
        await effect(session, organisation, event, values)
    await participant_event(
        session,
        "timeline.event_recorded",
        participant_id,
        {
            "participant_id": str(participant_id),
            "event_id": str(event_id),
            "type": event.type,
            "source_orgnr": organisation.orgnr,
        },
    )
    return _read(event, json.loads(payload))


async def timeline(
    session: AsyncSession,
    keyring: Keyring,
    caller: CallerContext,
    participant_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[EventRead]:
    """Every organisation's events, in the order they happened; what the caller may see
    of them is the gateway's decision."""
    organisation = await caller_organisation(session, caller)
    found = await registered_participant(session, participant_id, organisation.orgnr)
    key = open_data_key(keyring, participant_id, found)
    events = await store.list_events(session, participant_id, after=after, limit=limit)
    return [_read(event, _open_payload(key, event)) for event in events]


def _request_hash(participant_id: uuid.UUID, data: EventCreate) -> str:
    """The request in a canonical form: the same body with keys in another order is the same."""
    canonical = json.dumps(
        {"participant_id": str(participant_id), "event": data.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _replay(
    session: AsyncSession, keyring: Keyring, earlier: Event, request_hash: str
) -> EventRead:
    if earlier.request_hash != request_hash:
        raise IdempotencyKeyReused()
    found = await registered_participant(session, earlier.participant_id, earlier.source_orgnr)
    key = open_data_key(keyring, earlier.participant_id, found)
    return _read(earlier, _open_payload(key, earlier))


def _payload_aad(event_id: uuid.UUID) -> bytes:
    return associated_data("events", "payload", str(event_id))


def _open_payload(key: bytes, event: Event) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        open_sealed(key, event.payload_sealed, _payload_aad(event.id))
    )
    return payload


def _read(event: Event, payload: dict[str, Any]) -> EventRead:
    return EventRead(
        id=event.id,
        participant_id=event.participant_id,
        type=event.type,
        occurred_at=event.occurred_at,
        recorded_at=event.recorded_at,
        source=EventSource(
            orgnr=event.source_orgnr,
            agency_type=event.source_agency_type,
            system=event.source_system,
            verification=event.verification,
        ),
        payload=payload,
        corrects=event.corrects,
    )


async def _assign_veileder(
    session: AsyncSession, organisation: Organisation, event: Event, values: dict[str, Any]
) -> None:
    """A NAV integration's `veileder.tildelt` moves the veileder assignment, as the
    assignment route does; the assignment names the event that made it."""
    try:
        data = AssignmentCreate(
            role="veileder",
            staff_id=values.get("staff_id"),
            unit_id=values.get("unit_id"),
            valid_from=values.get("valid_from") or event.occurred_at,
        )
    except ValidationError as error:  # a deployment's catalogue without the one_of rule
        raise ValidationProblem(
            "The payload does not name one assignee.",
            errors=validation_errors(
                [{**e, "loc": ("body", "payload", *e["loc"])} for e in error.errors()]
            ),
        ) from None
    await assign(session, organisation, event.participant_id, data, source_event_id=event.id)


EFFECTS: dict[str, Effect] = {"veileder.tildelt": _assign_veileder}


def payload_categories(
    catalogue: EventCatalogue, events: Iterable[EventRead]
) -> dict[str, dict[str, str]]:
    """Per event type on the page, each declared payload field's data category."""
    return {
        event.type: {name: field.category for name, field in spec.payload.items()}
        for event in events
        if (spec := catalogue.types.get(event.type)) is not None
    }


def named_units(catalogue: EventCatalogue, events: Iterable[EventRead]) -> set[uuid.UUID]:
    """Every id the page's payloads hold in a `uuid` field: the units among them may need
    their routing handles (the others are simply not found)."""
    found: set[uuid.UUID] = set()
    for event in events:
        spec = catalogue.types.get(event.type)
        for name, field in spec.payload.items() if spec else ():
            value = event.payload.get(name)
            if field.type == "uuid" and value is not None:
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    found.add(uuid.UUID(str(value)))
    return found
