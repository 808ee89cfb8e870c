"""Domain events as one organisation may see them, for one purpose: the same policy as the
API, decided when the event is read or delivered (never when it happened), so a withdrawn
consent stops what was not yet delivered.

What each published event type is, to the policy:
- `assignment.started`, `programme.recorded`, `programme.updated`: (part of) a record of
  the `assignment` or `programme` resource held by the organisation in `orgnr`; its fields
  are decided like the record's in the API, ids are shown with anything released.
- `participant.updated`: the names of the fields the organisation in `orgnr` changed; a
  name is shown only where the reader could read that organisation's value, and the
  others are not listed at all (which fields changed is itself about the participant).
- `timeline.event_recorded`: a timeline event's id and type, shown where the reader could
  see some of its payload (GET .../timeline); the payload itself is read through the API.
- `consent.given`, `consent.recorded`, `consent.withdrawn`: the consent's parties and
  purposes, shown to a reader that could list the participant's consents.
- `thread.*`, `message.sent`: only to the thread's two organisations; the initiator's
  side is not told the recipient's units or people.

An event about a participant the reader may see nothing of, or of another type, is not
delivered at all. Registrations and guardianships are not published.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gateway.models import EventRecord
from gateway.personvern import Personvern
from gateway.policy import (
    Context,
    Decision,
    DecisionRequest,
    Owner,
    Subject,
    decide,
    gate_reason,
    read_grants,
)
from gateway.policy.consents import NONE
from gateway.policy.project import project_values, whole_resource_decision, withheld_of
from services.participant.schemas import EventFacts, EventFactsQuery
from shared.events import EVENT_TYPE_PREFIX
from shared.internal_auth import CallerContext


@dataclass(frozen=True, slots=True)
class RecordShape:
    resource: str
    fields: tuple[str, ...]  # data keys that are the resource's fields
    structural: tuple[str, ...]  # data keys shown with anything released (ids, owner)


ASSIGNMENT = RecordShape(
    "assignment",
    ("role", "staff_id", "unit_id", "valid_from"),
    ("participant_id", "assignment_id", "orgnr", "ended_assignment_id"),
)
PROGRAMME = RecordShape(
    "programme", ("programme", "status"), ("participant_id", "participation_id", "orgnr")
)
RECORDS = {
    "assignment.started": ASSIGNMENT,
    "programme.recorded": PROGRAMME,
    "programme.updated": PROGRAMME,
}
CONSENTS = ("consent.given", "consent.recorded", "consent.withdrawn")
THREADS = (
    "thread.opened",
    "message.sent",
    "thread.read",
    "thread.closed",
    "thread.handed_over",
    "thread.overdue",
)
# What a thread's initiating organisation is told of the other side's thread events.
THREAD_INITIATOR_KEYS = frozenset(
    {
        "thread_id",
        "participant_id",
        "initiator_orgnr",
        "recipient_orgnr",
        "purpose",
        "recipient_role",
        "message_id",
        "side",
    }
)
PUBLISHED_TYPES = tuple(
    EVENT_TYPE_PREFIX + short
    for short in (
        *RECORDS,
        "participant.updated",
        "timeline.event_recorded",
        *CONSENTS,
        *THREADS,
    )
)


@dataclass(frozen=True, slots=True)
class Reader:
    """Who events are projected for: an organisation's system (a feed reader, or the owner
    of a subscription), with the purpose it declared."""

    caller: CallerContext
    purpose: str


@dataclass(frozen=True, slots=True)
class Visible:
    """One event as the reader may see it, and the decisions the audit log records."""

    record: EventRecord
    envelope: dict[str, Any]
    participant_id: uuid.UUID
    decisions: tuple[Decision, ...]
    context: Context


class FactsSource(Protocol):
    """Where the projection learns relationships and flags (the participant service)."""

    async def event_facts(self, caller: CallerContext, query: EventFactsQuery) -> EventFacts: ...


def short_type(event_type: str) -> str:
    return event_type.removeprefix(EVENT_TYPE_PREFIX)


def _participant_of(record: EventRecord) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(record.envelope.get("data", {}).get("participant_id")))
    except ValueError:
        return None


def _query(records: Iterable[EventRecord]) -> EventFactsQuery:
    participants: dict[uuid.UUID, None] = {}
    orgnrs: dict[str, None] = {}
    units: dict[uuid.UUID, None] = {}
    types: dict[str, None] = {}
    for record in records:
        data = record.envelope.get("data", {})
        if (participant_id := _participant_of(record)) is not None:
            participants[participant_id] = None
        for key in ("orgnr", "source_orgnr"):
            if isinstance(data.get(key), str):
                orgnrs[data[key]] = None
        if short_type(record.type) == "assignment.started" and data.get("unit_id"):
            with contextlib.suppress(ValueError):
                units[uuid.UUID(str(data["unit_id"]))] = None
        if short_type(record.type) == "timeline.event_recorded":
            types[str(data.get("type"))] = None
    return EventFactsQuery(
        participant_ids=list(participants),
        orgnrs=list(orgnrs),
        unit_ids=list(units),
        event_types=list(types),
    )


class Projector:
    def __init__(self, personvern: Personvern, facts: FactsSource) -> None:
        self.personvern = personvern
        self.policy = personvern.policy
        self.facts = facts

    async def project(self, reader: Reader, records: Sequence[EventRecord]) -> list[Visible]:
        """The events of `records` the reader may see, in order, projected now."""
        published = [r for r in records if r.type in PUBLISHED_TYPES and _participant_of(r)]
        if not published:
            return []
        facts = await self.facts.event_facts(reader.caller, _query(published))
        grants = await read_grants(self.personvern.consents, list(facts.participants))
        now = datetime.now(UTC)
        visible = []
        for record in published:
            participant_id = _participant_of(record)
            subject = facts.participants.get(participant_id) if participant_id else None
            if participant_id is None or subject is None:
                continue  # unknown or shredded: told to no one
            context = Context(
                reader.caller,
                reader.purpose,
                frozenset(subject.relationships),
                Subject(subject.adressebeskyttelse, subject.skjermet, subject.birth_date),
                grants.get(participant_id, NONE),
                now,
            )
            shown = self._decide(record, context, facts)
            if shown is None:
                continue
            data, decisions = shown
            envelope = {**record.envelope, "sequence": str(record.seq), "data": data}
            visible.append(Visible(record, envelope, participant_id, decisions, context))
        return visible

    async def record_audit(self, visible: Sequence[Visible]) -> None:
        """One audit entry per participant for the decisions the events carried, written
        before they leave (raises if the audit log cannot be written)."""
        by_participant: dict[uuid.UUID, list[Visible]] = {}
        for item in visible:
            if item.decisions:
                by_participant.setdefault(item.participant_id, []).append(item)
        # All at once: the audit writer commits them together (group commit).
        await asyncio.gather(
            *(
                self.personvern.record(
                    items[0].context, participant_id, [d for i in items for d in i.decisions]
                )
                for participant_id, items in by_participant.items()
            )
        )

    def _decide(
        self, record: EventRecord, context: Context, facts: EventFacts
    ) -> tuple[dict[str, Any], tuple[Decision, ...]] | None:
        event_type = short_type(record.type)
        data: dict[str, Any] = record.envelope.get("data", {})
        if event_type in RECORDS:
            return self._record(RECORDS[event_type], data, context, facts)
        if event_type == "participant.updated":
            return self._participant_fields(data, context, facts)
        if event_type == "timeline.event_recorded":
            return self._timeline(data, context, facts)
        if gate_reason(self.policy, context) is not None:
            return None
        if event_type in CONSENTS:
            decision = whole_resource_decision(self.policy, "consents", context.purpose)
            return dict(data), (decision,)
        if event_type in THREADS:
            return _thread(data, context.caller)
        return None

    def _owner(self, context: Context, orgnr: Any, facts: EventFacts) -> Owner:
        if orgnr == context.caller.orgnr and context.caller.agency_type:
            return Owner(orgnr, context.caller.agency_type)
        # An organisation of unknown type matches no flow rule: nothing of it crosses.
        return Owner(str(orgnr), facts.agency_types.get(str(orgnr), ""))

    def _record(
        self, shape: RecordShape, data: dict[str, Any], context: Context, facts: EventFacts
    ) -> tuple[dict[str, Any], tuple[Decision, ...]] | None:
        owner = self._owner(context, data.get("orgnr"), facts)
        fields = {name: owner for name in shape.fields if name in data}
        decision = decide(self.policy, DecisionRequest(context, shape.resource, fields))
        projected = project_values(
            decision,
            {k: data[k] for k in (*shape.structural, *fields) if k in data},
            shape.structural,
            facts.routing_handles,
        )
        if projected is None:
            return None
        return {**projected.values, "withheld": _listed(projected.withheld)}, (decision,)

    def _participant_fields(
        self, data: dict[str, Any], context: Context, facts: EventFacts
    ) -> tuple[dict[str, Any], tuple[Decision, ...]] | None:
        owner = self._owner(context, data.get("orgnr"), facts)
        fields = {str(name): owner for name in data.get("fields", ())}
        decision = decide(self.policy, DecisionRequest(context, "participant", fields))
        if not decision.released:
            return None
        # Only the released names: a withheld list here would be drawn from which values
        # changed (unlike a resource's, drawn from its schema) and tell what it hides.
        shown = {
            "participant_id": data["participant_id"],
            "orgnr": data.get("orgnr"),
            "fields": list(decision.released),
        }
        return shown, (decision,)

    def _timeline(
        self, data: dict[str, Any], context: Context, facts: EventFacts
    ) -> tuple[dict[str, Any], tuple[Decision, ...]] | None:
        declared = facts.payload_categories.get(str(data.get("type")), {})
        owner = self._owner(context, data.get("source_orgnr"), facts)
        request = DecisionRequest(
            context,
            "event",
            {f"payload.{name}": owner for name in declared},
            {f"payload.{name}": category for name, category in declared.items()},
        )
        decision = decide(self.policy, request)
        if not decision.released:
            return None
        keys = ("participant_id", "event_id", "type", "source_orgnr")
        shown = {k: data[k] for k in keys if k in data}
        return {**shown, "withheld": _listed(withheld_of(decision))}, (decision,)


def _thread(
    data: dict[str, Any], caller: CallerContext
) -> tuple[dict[str, Any], tuple[Decision, ...]] | None:
    """A thread's events go to its two organisations only; the recipient's own units and
    people are its own business (and a protected participant's NAV unit is not named)."""
    if caller.orgnr == data.get("recipient_orgnr"):
        return dict(data), ()
    if caller.orgnr == data.get("initiator_orgnr"):
        return {k: v for k, v in data.items() if k in THREAD_INITIATOR_KEYS}, ()
    return None


def _listed(withheld: Iterable[Any]) -> list[dict[str, str]]:
    return [{"field": w.field, "reason": w.reason} for w in withheld]
