"""Registering, reading and updating participants: the steps that span several
store calls and the participant's data key."""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from stdnum.no import fodselsnummer

from services.participant import statistics, store
from services.participant.errors import CallerOrganisationUnknown, ParticipantNotFound
from services.participant.models import Attribute, Organisation, OutboxEvent
from services.participant.schemas import (
    ATTRIBUTE_FIELDS,
    DecisionFacts,
    EventFacts,
    EventFactsQuery,
    ParticipantCreate,
    ParticipantRead,
    ParticipantUpdate,
    ProgrammeStatistics,
    Provenance,
    StatisticsQuery,
    SubjectFacts,
)
from shared.crypto import Keyring, WrappedKey, associated_data, open_sealed, seal
from shared.events import make_event
from shared.internal_auth import CallerContext
from shared.outbox import record_event
from shared.problems import PreconditionFailed

EVENT_SOURCE = "/broen/participant"
NATIONAL_ID_INDEX = "national_id"
# Strictest first: when organisations disagree, the strictest protection wins.
PROTECTION_ORDER = ("strengt_fortrolig_utland", "strengt_fortrolig", "fortrolig")


@dataclass(frozen=True)
class ParticipantView:
    """A participant as the calling organisation sees it before the gateway's projection."""

    read: ParticipantRead
    etag: str
    relationships: frozenset[str]


async def participant_event(
    session: AsyncSession, type: str, participant_id: uuid.UUID, data: dict[str, Any]
) -> None:
    """Record a domain event about a participant in the current transaction (the outbox).
    `data` holds ids and codes only: never a national id, a name or free text."""
    await record_event(
        session,
        OutboxEvent,
        make_event(EVENT_SOURCE, type, subject=str(participant_id), data=data),
    )


def now_utc() -> datetime:
    return datetime.now(UTC)


async def caller_organisation(session: AsyncSession, caller: CallerContext) -> Organisation:
    organisation = await store.get_organisation(session, caller.orgnr) if caller.orgnr else None
    if organisation is None:
        raise CallerOrganisationUnknown()
    return organisation


async def registered_participant(
    session: AsyncSession, participant_id: uuid.UUID, orgnr: str
) -> store.ReadableParticipant:
    """An organisation works only with participants it registered; others look unknown."""
    found = await store.get_readable_participant(
        session, participant_id, orgnr=orgnr, now=now_utc()
    )
    if found is None or "registered" not in found.relationships:
        raise ParticipantNotFound()
    return found


def open_data_key(
    keyring: Keyring, participant_id: uuid.UUID, found: store.ReadableParticipant
) -> bytes:
    return keyring.unwrap(WrappedKey(found.key_id, found.wrapped_key), str(participant_id))


async def register(
    session: AsyncSession, keyring: Keyring, caller: CallerContext, data: ParticipantCreate
) -> tuple[ParticipantView, bool]:
    """Create-or-link. Returns the view and whether this organisation registered the person
    just now (True both for a person new to Broen and one known to another organisation)."""
    organisation = await caller_organisation(session, caller)
    now = now_utc()
    index = keyring.blind_index(NATIONAL_ID_INDEX, data.national_id)
    participant_id = await store.find_participant_id(session, index)
    if participant_id is None:
        participant_id = uuid.uuid4()
        data_key, wrapped = keyring.new_data_key(str(participant_id))
        sealed = seal(
            data_key,
            data.national_id.encode(),
            associated_data("participants", "national_id", str(participant_id)),
        )
        inserted = await store.insert_participant(
            session,
            participant_id=participant_id,
            national_id_index=index,
            national_id_sealed=sealed,
            key_id=wrapped.kid,
            wrapped_key=wrapped.wrapped,
            now=now,
        )
        if not inserted:  # registered concurrently by someone else: link to that record
            participant_id = await store.find_participant_id(session, index)
            assert participant_id is not None
    newly_registered = await store.add_registration(
        session, participant_id=participant_id, orgnr=organisation.orgnr, now=now
    )
    if newly_registered:
        values = data.model_dump(include=set(ATTRIBUTE_FIELDS), exclude_none=True, mode="json")
        values["birth_date"] = fodselsnummer.get_birth_date(data.national_id).isoformat()
        await _write_attributes(
            session,
            keyring,
            participant_id,
            organisation,
            values,
            data.source_system,
            data.verification,
            now,
        )
        await store.bump_version(
            session, participant_id=participant_id, expected_version=None, now=now
        )
        await participant_event(
            session,
            "participant.registered",
            participant_id,
            {"participant_id": str(participant_id), "orgnr": organisation.orgnr},
        )
    return await view(session, keyring, caller, participant_id), newly_registered


def etag(keyring: Keyring, participant_id: uuid.UUID, version: int) -> str:
    """An opaque entity tag. A plain version number would tell an organisation linking a
    person whether someone else had registered them before (an existence oracle)."""
    return '"' + keyring.blind_index("etag", f"{participant_id}:{version}")[:24] + '"'


async def find(session: AsyncSession, keyring: Keyring, national_id: str) -> uuid.UUID | None:
    return await store.find_participant_id(
        session, keyring.blind_index(NATIONAL_ID_INDEX, national_id)
    )


async def update(
    session: AsyncSession,
    keyring: Keyring,
    caller: CallerContext,
    participant_id: uuid.UUID,
    data: ParticipantUpdate,
    if_match: str,
) -> ParticipantView:
    organisation = await caller_organisation(session, caller)
    # Values are recorded per organisation: one that never registered the person has none.
    current = await registered_participant(session, participant_id, organisation.orgnr)
    stale = PreconditionFailed("The participant changed since you read it; read it again.")
    if not hmac.compare_digest(if_match, etag(keyring, participant_id, current.version)):
        raise stale
    now = now_utc()
    # The version check is repeated in the UPDATE: a concurrent writer loses here.
    if (
        await store.bump_version(
            session, participant_id=participant_id, expected_version=current.version, now=now
        )
        is None
    ):
        raise stale
    changed = data.model_fields_set & set(ATTRIBUTE_FIELDS)
    values = data.model_dump(include=changed, mode="json")
    for field in [f for f, v in values.items() if v is None]:
        await store.remove_attribute(
            session, participant_id=participant_id, field=field, owner_orgnr=organisation.orgnr
        )
        del values[field]
    await _write_attributes(
        session,
        keyring,
        participant_id,
        organisation,
        values,
        data.source_system,
        data.verification,
        now,
    )
    await participant_event(
        session,
        "participant.updated",
        participant_id,
        {
            "participant_id": str(participant_id),
            # The organisation whose values changed: the owner the gateway decides them as.
            "orgnr": organisation.orgnr,
            "fields": sorted(changed),
        },
    )
    return await view(session, keyring, caller, participant_id)


async def _write_attributes(
    session: AsyncSession,
    keyring: Keyring,
    participant_id: uuid.UUID,
    organisation: Organisation,
    values: dict[str, Any],
    source_system: str,
    verification: str,
    now: datetime,
) -> None:
    data_key = await _data_key(session, keyring, participant_id)
    for field, value in values.items():
        aad = associated_data("attributes", field, f"{participant_id}/{organisation.orgnr}")
        await store.put_attribute(
            session,
            Attribute(
                participant_id=participant_id,
                field=field,
                owner_orgnr=organisation.orgnr,
                owner_agency_type=organisation.agency_type,
                value_sealed=seal(data_key, json.dumps(value).encode(), aad),
                source_system=source_system,
                verification=verification,
                recorded_at=now,
            ),
        )
    await session.flush()


async def _data_key(session: AsyncSession, keyring: Keyring, participant_id: uuid.UUID) -> bytes:
    wrapped = await store.get_wrapped_key(session, participant_id)
    if wrapped is None:  # shredded or never existed
        raise ParticipantNotFound()
    return keyring.unwrap(WrappedKey(wrapped.kid, wrapped.wrapped_key), str(participant_id))


async def _readable(
    session: AsyncSession, caller: CallerContext, participant_id: uuid.UUID, now: datetime
) -> store.ReadableParticipant | None:
    """The participant's key and the caller's relationships to it (None: unknown/shredded)."""
    return await store.get_readable_participant(
        session,
        participant_id,
        orgnr=caller.orgnr,
        staff_id=uuid.UUID(caller.staff_id) if caller.staff_id else None,
        unit_id=uuid.UUID(caller.unit_id) if caller.unit_id else None,
        now=now,
    )


async def view(
    session: AsyncSession, keyring: Keyring, caller: CallerContext, participant_id: uuid.UUID
) -> ParticipantView:
    """The participant with, per field, the value the caller's organisation recorded, else the
    most recent verified one, else the most recent one. Projection is the gateway's job."""
    found = await _readable(session, caller, participant_id, now_utc())
    if found is None:
        raise ParticipantNotFound()
    data_key = open_data_key(keyring, participant_id, found)
    attributes = await store.list_attributes(session, participant_id)
    values, chosen = _chosen_values(data_key, attributes, caller.orgnr)
    provenance: dict[str, Provenance] = {}
    for field, attribute in chosen.items():
        provenance[field] = Provenance(
            owner_orgnr=attribute.owner_orgnr,
            owner_agency_type=attribute.owner_agency_type,
            source_system=attribute.source_system,
            verification=attribute.verification,
            recorded_at=attribute.recorded_at,
        )
    read = ParticipantRead(id=participant_id, provenance=provenance, **values)
    return ParticipantView(
        read=read,
        etag=etag(keyring, participant_id, found.version),
        relationships=found.relationships,
    )


async def decision_facts(
    session: AsyncSession,
    keyring: Keyring,
    caller: CallerContext,
    participant_id: uuid.UUID,
    *,
    orgnrs: Iterable[str] = (),
    unit_ids: Iterable[uuid.UUID] = (),
    payload_categories: dict[str, dict[str, str]] | None = None,
) -> DecisionFacts:
    """What the gateway decides a page of records about the participant with: the caller's
    relationships, the participant's protection flags and birth date (as a read would give
    them), the agency types of the organisations and the routing handles of the units the
    page names."""
    seen = await view(session, keyring, caller, participant_id)
    return DecisionFacts(
        relationships=sorted(seen.relationships),
        adressebeskyttelse=seen.read.adressebeskyttelse,
        skjermet=bool(seen.read.skjermet),
        birth_date=seen.read.birth_date,
        agency_types=await store.agency_types(session, orgnrs),
        routing_handles=await store.routing_handles(session, unit_ids),
        payload_categories=payload_categories or {},
    )


# The participant's fields the personvern decision reads (Subject).
SUBJECT_FIELDS = ("adressebeskyttelse", "skjermet", "birth_date")


async def event_facts(
    session: AsyncSession,
    keyring: Keyring,
    caller: CallerContext,
    query: EventFactsQuery,
    payload_categories: dict[str, dict[str, str]],
) -> EventFacts:
    """What the gateway projects a page of domain events for `caller` with: per participant
    the caller's relationships and the participant's flags, as a read would give them."""
    now = now_utc()
    found: dict[uuid.UUID, store.ReadableParticipant] = {}
    for participant_id in dict.fromkeys(query.participant_ids):
        readable = await _readable(session, caller, participant_id, now)
        if readable is not None:  # unknown or shredded: its events go to no one
            found[participant_id] = readable
    # Only the fields the decision reads, for every participant in one query.
    flags = await store.list_attributes_of(session, list(found), fields=SUBJECT_FIELDS)
    by_participant: dict[uuid.UUID, list[Attribute]] = {pid: [] for pid in found}
    for attribute in flags:
        by_participant[attribute.participant_id].append(attribute)
    participants: dict[uuid.UUID, SubjectFacts] = {}
    for participant_id, readable in found.items():
        values, _ = _chosen_values(
            open_data_key(keyring, participant_id, readable),
            by_participant[participant_id],
            caller.orgnr,
        )
        participants[participant_id] = SubjectFacts(
            relationships=sorted(readable.relationships),
            adressebeskyttelse=values.get("adressebeskyttelse"),
            skjermet=bool(values.get("skjermet")),
            birth_date=values.get("birth_date"),
        )
    return EventFacts(
        participants=participants,
        agency_types=await store.agency_types(session, query.orgnrs),
        routing_handles=await store.routing_handles(session, query.unit_ids),
        payload_categories=payload_categories,
    )


def _chosen_values(
    data_key: bytes, attributes: list[Attribute], caller_orgnr: str | None
) -> tuple[dict[str, Any], dict[str, Attribute]]:
    """Per field the value a read gives (see `view`), and the attribute it came from."""
    chosen: dict[str, Attribute] = {}
    for attribute in attributes:
        current = chosen.get(attribute.field)
        if current is None or _preferred(attribute, current, caller_orgnr):
            chosen[attribute.field] = attribute
    opened = {(a.field, a.owner_orgnr): _open_attribute(data_key, a) for a in attributes}
    _apply_strictest_protection(chosen, attributes, opened)
    values = {field: opened[(field, a.owner_orgnr)] for field, a in chosen.items()}
    return values, chosen


def _preferred(candidate: Attribute, current: Attribute, caller_orgnr: str | None) -> bool:
    def rank(attribute: Attribute) -> tuple[bool, bool, datetime]:
        return (
            attribute.owner_orgnr == caller_orgnr,
            attribute.verification == "verified",
            attribute.recorded_at,
        )

    return rank(candidate) > rank(current)


def _open_attribute(data_key: bytes, attribute: Attribute) -> Any:
    aad = associated_data(
        "attributes", attribute.field, f"{attribute.participant_id}/{attribute.owner_orgnr}"
    )
    value = json.loads(open_sealed(data_key, attribute.value_sealed, aad))
    return date.fromisoformat(value) if attribute.field == "birth_date" else value


def _apply_strictest_protection(
    chosen: dict[str, Attribute], attributes: list[Attribute], opened: dict[tuple[str, str], Any]
) -> None:
    """Protection flags are not a matter of preference: the strictest any organisation
    recorded applies, and its provenance goes with it."""

    def strictness(attribute: Attribute) -> int:
        value = opened[(attribute.field, attribute.owner_orgnr)]
        if attribute.field == "skjermet":
            return 1 if value else 0
        return len(PROTECTION_ORDER) - PROTECTION_ORDER.index(value) if value else 0

    for field in ("adressebeskyttelse", "skjermet"):
        candidates = [a for a in attributes if a.field == field and strictness(a) > 0]
        if candidates:
            chosen[field] = max(candidates, key=strictness)


async def programme_statistics(
    session: AsyncSession, caller: CallerContext, query: StatisticsQuery
) -> ProgrammeStatistics:
    """The statistics of the programme places the caller's own organisation runs: an
    organisation is the controller of its places, and sees no one else's."""
    organisation = await caller_organisation(session, caller)
    counts = await store.programme_counts(
        session,
        orgnr=organisation.orgnr,
        starts_from=query.starts_from,
        starts_before=query.starts_before,
    )
    return statistics.tabulate(counts, orgnr=organisation.orgnr, period=query)
