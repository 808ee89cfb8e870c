"""Field projection: what leaves the gateway is what the decision released, plus the list
of withheld fields and why, computed from the resource's schema (never from which values
exist), with `never` categories left out.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.policy.decide import (
    NOT_SHARED,
    ROUTING_HANDLE,
    Context,
    Decision,
    DecisionRequest,
    FieldDecision,
    Owner,
    Subject,
    decide,
)
from gateway.policy.document import Policy
from services.participant.schemas import (
    ATTRIBUTE_FIELDS,
    AssignmentRead,
    DecisionFacts,
    EventRead,
    ParticipantRead,
    ProgrammeRead,
    Withheld,
)

OwnedRecord = AssignmentRead | ProgrammeRead
RECORD_RESOURCES: dict[type[OwnedRecord], str] = {
    AssignmentRead: "assignment",
    ProgrammeRead: "programme",
}


@functools.cache
def _withheld(field: str, reason: str) -> Withheld:
    # Few fields times few reasons: built once each. Never mutated after construction.
    return Withheld.model_construct(field=field, reason=reason)


def subject_of(source: ParticipantRead | DecisionFacts) -> Subject:
    """The participant's flags and birth date, from the record before projection or from the
    facts a page of records (or a message's route) came with."""
    return Subject(source.adressebeskyttelse, bool(source.skjermet), source.birth_date)


def decide_participant(policy: Policy, context: Context, participant: ParticipantRead) -> Decision:
    """Decide every attribute field of the schema, held or not."""
    fields: dict[str, Owner | None] = {}
    for field in ATTRIBUTE_FIELDS:
        provenance = participant.provenance.get(field)
        fields[field] = (
            None
            if provenance is None
            else Owner(provenance.owner_orgnr, provenance.owner_agency_type)
        )
    return decide(policy, DecisionRequest(context, "participant", fields))


def project_participant(participant: ParticipantRead, decision: Decision) -> ParticipantRead | None:
    """The participant with only released fields, or None when nothing is released (the
    gateway then answers as for an unknown participant: no existence oracle)."""
    released = [d.field for d in decision.fields if d.release]
    if not released:
        return None
    provenance = participant.provenance
    return ParticipantRead.model_construct(
        id=participant.id,
        provenance={f: provenance[f] for f in released if f in provenance},
        withheld=withheld_of(decision),
        **{f: getattr(participant, f) for f in released},
    )


def whole_resource_decision(policy: Policy, resource: str, purpose: str) -> Decision:
    """A resource released as a whole to a caller the gate let through (the consents about
    a participant): the decision the audit log records for it."""
    released = FieldDecision("all", None, True, "relationship", "relationship", "roles")
    return Decision(policy.version, resource, purpose, (released,))


def withheld_of(decision: Decision) -> list[Withheld]:
    """The withheld fields a caller is told of, with the reason it is shown."""
    return [_withheld(d.field, d.shown) for d in decision.fields if not d.release and d.listed]


@dataclass(frozen=True, slots=True)
class ProjectedRecord:
    """One record as the caller may see it: structural and released fields (JSON-ready),
    the withheld fields with the reason shown, and the decision for the audit log."""

    values: dict[str, Any]
    withheld: tuple[Withheld, ...]
    decision: Decision


def decide_records(
    policy: Policy,
    context: Context,
    records: Sequence[OwnedRecord],
    *,
    agency_types: Mapping[str, str],
) -> list[Decision]:
    """Decide every field of each assignment or programme place (in order), held by the
    record's organisation; `agency_types` maps each record's orgnr to its agency type."""
    decisions = []
    for record in records:
        resource = RECORD_RESOURCES[type(record)]
        structural = policy.structural.get(resource, ())
        owner = _owner(context, record.orgnr, agency_types)
        fields = {f: owner for f in type(record).model_fields if f not in structural}
        decisions.append(decide(policy, DecisionRequest(context, resource, fields)))
    return decisions


def project_records(
    policy: Policy,
    context: Context,
    records: Sequence[OwnedRecord],
    *,
    agency_types: Mapping[str, str],
    routing_handles: Mapping[uuid.UUID, str] | None = None,
    decisions: Sequence[Decision] | None = None,
) -> list[ProjectedRecord]:
    """Assignments or programme places, projected per record; a record of which nothing is
    released is left out. `decisions` (from decide_records) saves deciding again."""
    if decisions is None:
        decisions = decide_records(policy, context, records, agency_types=agency_types)
    projected = []
    for record, decision in zip(records, decisions, strict=True):
        released = decision.released
        if not released:
            continue
        structural = policy.structural.get(decision.resource, ())
        values = record.model_dump(mode="json", include={*structural, *released})
        projected.append(_finish(values, decision, values, routing_handles, prefix=""))
    return projected


def project_values(
    decision: Decision,
    values: Mapping[str, Any],
    structural: Sequence[str],
    routing_handles: Mapping[uuid.UUID, str] | None,
) -> ProjectedRecord | None:
    """A record given as plain values (a domain event's data), projected like
    project_records: the `structural` keys and the released fields, or None when nothing
    is released."""
    released = decision.released
    if not released:
        return None
    shown = {k: values[k] for k in (*structural, *released) if k in values}
    return _finish(shown, decision, shown, routing_handles, prefix="")


def decide_events(
    policy: Policy,
    context: Context,
    events: Sequence[EventRead],
    *,
    payload_categories: Mapping[str, Mapping[str, str]],
) -> list[Decision]:
    """Decide each event's payload fields (in order), each field's category from the event
    catalogue (`payload_categories`: event type -> field -> category); an unknown type has
    no fields to release."""
    decisions = []
    for event in events:
        declared = payload_categories.get(event.type, {})
        owner = Owner(event.source.orgnr, event.source.agency_type)
        request = DecisionRequest(
            context,
            "event",
            {f"payload.{name}": owner for name in declared},
            {f"payload.{name}": category for name, category in declared.items()},
        )
        decisions.append(decide(policy, request))
    return decisions


def project_events(
    policy: Policy,
    context: Context,
    events: Sequence[EventRead],
    *,
    payload_categories: Mapping[str, Mapping[str, str]],
    routing_handles: Mapping[uuid.UUID, str] | None = None,
    decisions: Sequence[Decision] | None = None,
) -> list[ProjectedRecord]:
    """Timeline events projected per payload field. An event of which no payload field is
    released is left out. `decisions` (from decide_events) saves deciding again."""
    if decisions is None:
        decisions = decide_events(policy, context, events, payload_categories=payload_categories)
    structural = policy.structural.get("event", ())
    projected = []
    for event, decision in zip(events, decisions, strict=True):
        released = decision.released
        if not released:
            continue
        values = event.model_dump(mode="json", include=set(structural))
        payload = {
            name: event.payload[name]
            for field in released
            if (name := field.removeprefix("payload.")) in event.payload
        }
        values["payload"] = payload
        projected.append(_finish(values, decision, payload, routing_handles, prefix="payload."))
    return projected


def _owner(context: Context, orgnr: str, agency_types: Mapping[str, str]) -> Owner:
    if orgnr == context.caller.orgnr and context.caller.agency_type:
        return Owner(orgnr, context.caller.agency_type)
    # An organisation of unknown type matches no flow rule: nothing of it crosses.
    return Owner(orgnr, agency_types.get(orgnr, ""))


def _finish(
    values: dict[str, Any],
    decision: Decision,
    holder: dict[str, Any],
    routing_handles: Mapping[uuid.UUID, str] | None,
    *,
    prefix: str,
) -> ProjectedRecord:
    """Apply the unit-identity replacement and list what is withheld."""
    withheld = withheld_of(decision)
    for d in decision.fields:
        if d.replace != ROUTING_HANDLE:
            continue
        name = d.field.removeprefix(prefix)
        value = holder.get(name)
        if value is None:
            continue
        handle = _handle(routing_handles, value)
        if handle is None:
            # No handle known: the unit is not named at all (fail closed).
            del holder[name]
            # Only ever across organisations, where protection is shown as not_shared.
            withheld.append(_withheld(d.field, NOT_SHARED))
        else:
            holder[name] = handle
    return ProjectedRecord(values, tuple(withheld), decision)


def _handle(routing_handles: Mapping[uuid.UUID, str] | None, value: Any) -> str | None:
    if not routing_handles:
        return None
    try:
        return routing_handles.get(uuid.UUID(str(value)))
    except ValueError:
        return None
