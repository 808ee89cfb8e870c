"""The participant's timeline: append-only events of the catalogue's types, each with its
source organisation, system and verification. Payloads are sealed with the participant's
data key. An organisation records only the types its agency type owns, about participants
it registered, and an Idempotency-Key makes a retry return the first result. A batch
(`record_batch`) holds each of its items to the same rules, one by one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pydantic_core
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.participant import store
from services.participant.assignments import assign
from services.participant.catalogue import EventCatalogue
from services.participant.errors import (
    EventConflict,
    EventTypeNotOwned,
    IdempotencyKeyReused,
    ParticipantNotFound,
    UnknownEventType,
)
from services.participant.models import Event, Organisation
from services.participant.schemas import (
    AssignmentCreate,
    EventBatchItem,
    EventBatchItemResult,
    EventBatchResult,
    EventCreate,
    EventRead,
    EventSource,
    IdempotencyKeyValue,
    ItemProblem,
)
from services.participant.service import (
    NATIONAL_ID_INDEX,
    caller_organisation,
    now_utc,
    open_data_key,
    participant_event,
    registered_participant,
)
from shared.crypto import Keyring, WrappedKey, associated_data, open_sealed, seal
from shared.internal_auth import CallerContext
from shared.problems import Problem, ValidationProblem, validation_errors

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
    known = await _known(
        session,
        keyring,
        organisation,
        participant_ids=[participant_id],
        idempotency_keys=[idempotency_key] if idempotency_key is not None else [],
        corrects=[data.corrects] if data.corrects is not None else [],
    )
    outcome = _accept(catalogue, known, participant_id, data, idempotency_key=idempotency_key)
    if isinstance(outcome, _Accepted):
        outcome = await _write(session, known, outcome)
    event = outcome.event
    if outcome.payload is None:  # a retry: the first result
        return _read(event, _open_payload(known.data_keys[event.participant_id], event))
    await _announce(session, organisation, event)
    return _read(event, json.loads(outcome.payload))


async def record_batch(
    session: AsyncSession,
    keyring: Keyring,
    catalogue: EventCatalogue,
    caller: CallerContext,
    items: Sequence[Any],
) -> EventBatchResult:
    """Each item is held to the single push's rules and accepted or refused on its own; a
    refused one leaves nothing behind and never blocks the others. The request commits once.

    What the items need to know is read up front, one query for the whole batch each. An
    event whose type acts (`veileder.tildelt`) is written with its effect in a savepoint of
    its own, so a refused effect undoes the event and nothing else; the other events are a
    single row each, all or nothing by itself, and go in one multi-row INSERT per run of
    them (a savepoint around each would cost three round trips an item)."""
    organisation = await caller_organisation(session, caller)
    parsed = [_parse_item(item) for item in items]
    wanted = [item for item in parsed if isinstance(item, EventBatchItem)]
    indexes = {
        item.national_id: keyring.blind_index(NATIONAL_ID_INDEX, item.national_id)
        for item in wanted
        if item.national_id is not None
    }
    by_index = await store.find_participant_ids(session, indexes.values())
    known = await _known(
        session,
        keyring,
        organisation,
        participant_ids=[
            *(item.participant_id for item in wanted if item.participant_id is not None),
            *by_index.values(),
        ],
        idempotency_keys=[item.idempotency_key for item in wanted],
        corrects=[item.corrects for item in wanted if item.corrects is not None],
    )
    # A national id names only a participant the caller registered: anyone else's is as
    # unknown as no one's (no existence oracle), whatever else the item holds.
    by_national_id = {
        national_id: participant_id
        for national_id, index in indexes.items()
        if (participant_id := by_index.get(index)) is not None and participant_id in known.data_keys
    }
    batch = _Batch(session, catalogue, known)
    for index, (item, sent) in enumerate(zip(parsed, items, strict=True)):
        try:
            if isinstance(item, Problem):
                raise item
            participant_id = item.participant_id or by_national_id.get(item.national_id or "")
            if participant_id is None:
                raise ParticipantNotFound()
            await batch.add(index, participant_id, item)
        except Problem as problem:
            batch.refuse(index, _key_as_sent(sent), problem)
    return await batch.finish()


@dataclass
class _Known:
    """What recording events needs to know before it writes, read once for all of them.
    Events written meanwhile are added, so a later item can replay or correct them."""

    organisation: Organisation
    # The data keys of the named participants the organisation registered.
    data_keys: dict[uuid.UUID, bytes]
    # The organisation's events under the idempotency keys given, by key.
    earlier: dict[str, Event]
    # The participant of each event named by `corrects`, by event id.
    corrected: dict[uuid.UUID, uuid.UUID]

    def remember(self, event: Event) -> None:
        if event.idempotency_key is not None:
            self.earlier[event.idempotency_key] = event
        self.corrected[event.id] = event.participant_id


async def _known(
    session: AsyncSession,
    keyring: Keyring,
    organisation: Organisation,
    *,
    participant_ids: Iterable[uuid.UUID],
    idempotency_keys: Iterable[str],
    corrects: Iterable[uuid.UUID],
) -> _Known:
    wrapped = await store.registered_data_keys(session, participant_ids, orgnr=organisation.orgnr)
    return _Known(
        organisation=organisation,
        data_keys={
            participant_id: keyring.unwrap(WrappedKey(kid, key), str(participant_id))
            for participant_id, (kid, key) in wrapped.items()
        },
        earlier=await store.find_events_by_keys(
            session, orgnr=organisation.orgnr, idempotency_keys=idempotency_keys
        ),
        corrected=await store.event_participants(session, corrects),
    )


@dataclass(frozen=True)
class _Recorded:
    event: Event
    # The payload as stored, for an event recorded now; None for a retry's earlier event.
    payload: bytes | None


@dataclass(frozen=True)
class _Accepted:
    """An event that passed the rules, not yet written."""

    event: Event
    values: dict[str, Any]
    payload: bytes
    request_hash: str
    effect: Effect | None


def _accept(
    catalogue: EventCatalogue,
    known: _Known,
    participant_id: uuid.UUID,
    data: EventCreate,
    *,
    idempotency_key: str | None,
) -> _Accepted | _Recorded:
    """The rules of recording an event, for the single push and each item of a batch: the
    event to write, or the earlier one a retry answers with. Raises the refusal's problem."""
    organisation = known.organisation
    request_hash = _request_hash(participant_id, data)
    if idempotency_key is not None:
        earlier = known.earlier.get(idempotency_key)
        if earlier is not None:
            return _replay(known, earlier, request_hash)
    spec = catalogue.types.get(data.type)
    if spec is None:
        raise UnknownEventType()
    if organisation.agency_type not in spec.owners:
        raise EventTypeNotOwned()
    values = spec.check_payload(data.payload)
    data_key = known.data_keys.get(participant_id)
    if data_key is None:
        raise ParticipantNotFound()
    if data.corrects is not None and known.corrected.get(data.corrects) != participant_id:
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
        payload_sealed=seal(data_key, payload, _payload_aad(event_id)),
        corrects=data.corrects,
        idempotency_key=idempotency_key,
        request_hash=request_hash if idempotency_key is not None else None,
    )
    return _Accepted(event, values, payload, request_hash, EFFECTS.get(data.type))


async def _write(
    session: AsyncSession, known: _Known, accepted: _Accepted, *, savepoint: bool = False
) -> _Recorded:
    """Write the event and do its effect; with `savepoint`, a refused effect undoes the
    event too without undoing anything else the transaction holds."""
    event = accepted.event
    async with session.begin_nested() if savepoint else contextlib.nullcontext():
        if not await store.add_event(session, event):
            return await _taken(session, known, accepted)
        if accepted.effect is not None:
            await accepted.effect(session, known.organisation, event, accepted.values)
    known.remember(event)
    return _Recorded(event, accepted.payload)


async def _taken(session: AsyncSession, known: _Known, accepted: _Accepted) -> _Recorded:
    """Only a key conflicts: a concurrent request with it got there first, answer as it did."""
    key = accepted.event.idempotency_key
    assert key is not None
    earlier = await store.find_event_by_key(
        session, orgnr=known.organisation.orgnr, idempotency_key=key
    )
    if earlier is None:  # gone meanwhile (its participant was shredded)
        raise EventConflict()
    known.remember(earlier)
    return _replay(known, earlier, accepted.request_hash)


class _Batch:
    """A batch's results by item, and its accepted events without an effect, held back to be
    written together."""

    def __init__(self, session: AsyncSession, catalogue: EventCatalogue, known: _Known) -> None:
        self.session = session
        self.catalogue = catalogue
        self.known = known
        self.results: dict[int, EventBatchItemResult] = {}
        self.recorded: list[Event] = []  # written now, in request order
        self._pending: dict[int, _Accepted] = {}
        self._pending_keys: set[str] = set()

    async def add(self, index: int, participant_id: uuid.UUID, item: EventBatchItem) -> None:
        """Accept the item, or raise the problem it is refused with."""
        if item.idempotency_key in self._pending_keys:
            await self.write_pending()  # the key's first item is settled first
        outcome = _accept(
            self.catalogue,
            self.known,
            participant_id,
            item,
            idempotency_key=item.idempotency_key,
        )
        if isinstance(outcome, _Accepted):
            if outcome.effect is None:
                self._pending[index] = outcome
                self._pending_keys.add(item.idempotency_key)
                return
            await self.write_pending()  # in request order
            outcome = await _write(self.session, self.known, outcome, savepoint=True)
        self.settle(index, outcome)

    async def write_pending(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        self._pending_keys.clear()
        # In key order, so that concurrent batches sharing keys wait for each other's rows
        # in the same order rather than deadlock.
        rows = sorted((a.event for a in pending.values()), key=lambda e: e.idempotency_key or "")
        written = await store.add_events(self.session, rows)
        for index, accepted in pending.items():
            if accepted.event.id in written:
                self.known.remember(accepted.event)
                self.settle(index, _Recorded(accepted.event, accepted.payload))
                continue
            try:
                self.settle(index, await _taken(self.session, self.known, accepted))
            except Problem as problem:
                self.refuse(index, accepted.event.idempotency_key, problem)

    def settle(self, index: int, recorded: _Recorded) -> None:
        event = recorded.event
        if recorded.payload is not None:
            self.recorded.append(event)
        self.results[index] = EventBatchItemResult(
            index=index,
            idempotency_key=event.idempotency_key,
            status=201 if recorded.payload is not None else 200,
            event_id=event.id,
            participant_id=event.participant_id,
        )

    def refuse(self, index: int, idempotency_key: str | None, problem: Problem) -> None:
        self.results[index] = EventBatchItemResult(
            index=index,
            idempotency_key=idempotency_key,
            status=problem.status,
            problem=ItemProblem.model_validate(problem.body()),
        )

    async def finish(self) -> EventBatchResult:
        await self.write_pending()
        # Announced once every item is settled: the outbox rows go in one INSERT at commit
        # (a savepoint flushes what is pending, one item's row at a time).
        for event in self.recorded:
            await _announce(self.session, self.known.organisation, event)
        results = [self.results[index] for index in sorted(self.results)]
        accepted = sum(result.problem is None for result in results)
        return EventBatchResult(items=results, accepted=accepted, refused=len(results) - accepted)


async def _announce(session: AsyncSession, organisation: Organisation, event: Event) -> None:
    await participant_event(
        session,
        "timeline.event_recorded",
        event.participant_id,
        {
            "participant_id": str(event.participant_id),
            "event_id": str(event.id),
            "type": event.type,
            "source_orgnr": organisation.orgnr,
        },
    )


def _parse_item(item: Any) -> EventBatchItem | ValidationProblem:
    """The item, or the 422 problem the single push would answer it with (locations are
    within the item; the result's index says which)."""
    try:
        return EventBatchItem.model_validate(item)
    except ValidationError as error:
        return ValidationProblem(
            "One or more fields are not valid.",
            errors=validation_errors(
                [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_input=False)]
            ),
        )


_IDEMPOTENCY_KEY = TypeAdapter(IdempotencyKeyValue)


def _key_as_sent(item: Any) -> str | None:
    """The item's idempotency key as sent, if it is one (a malformed item's may not be)."""
    try:
        return _IDEMPOTENCY_KEY.validate_python(item.get("idempotency_key"))
    except (AttributeError, ValidationError):
        return None


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


# What a request hash covers: the event, not how a batch item names its participant.
_EVENT_FIELDS = set(EventCreate.model_fields)


def _request_hash(participant_id: uuid.UUID, data: EventCreate) -> str:
    """The request in a canonical form: the same body with keys in another order is the same.
    A batch item is hashed as the single push of the same event would be."""
    canonical = json.dumps(
        {
            "participant_id": str(participant_id),
            "event": data.model_dump(mode="json", include=_EVENT_FIELDS),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(known: _Known, earlier: Event, request_hash: str) -> _Recorded:
    if earlier.request_hash != request_hash:
        raise IdempotencyKeyReused()
    if earlier.participant_id not in known.data_keys:
        raise ParticipantNotFound()
    return _Recorded(earlier, None)


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
