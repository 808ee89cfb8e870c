"""All SQL of the participant service. Functions flush, never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Date,
    DateTime,
    String,
    Uuid,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    inspect,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased
from sqlalchemy.sql.elements import ColumnElement

from services.participant.models import (
    Assignment,
    Attribute,
    Event,
    Guardianship,
    Organisation,
    OutboxEvent,
    Participant,
    ParticipantKey,
    ProgrammeParticipation,
    Registration,
    Staff,
    Unit,
)
from shared.data_keys import delete_in_order
from shared.db import UtcDateTime
from shared.outbox import outbox_about


async def add_organisation(
    session: AsyncSession,
    *,
    orgnr: str,
    name: str,
    agency_type: str,
    county: str | None,
    now: datetime,
) -> Organisation | None:
    """The new organisation, or None when the orgnr is already registered."""
    organisation = Organisation(
        orgnr=orgnr, name=name, agency_type=agency_type, county=county, created_at=now
    )
    try:
        async with session.begin_nested():
            session.add(organisation)
    except IntegrityError:
        return None
    return organisation


async def get_organisation(session: AsyncSession, orgnr: str) -> Organisation | None:
    return await session.get(Organisation, orgnr)


async def list_organisations(session: AsyncSession) -> list[Organisation]:
    return list((await session.scalars(select(Organisation).order_by(Organisation.orgnr))).all())


async def find_participant_id(session: AsyncSession, national_id_index: str) -> uuid.UUID | None:
    return await session.scalar(
        select(Participant.id).where(Participant.national_id_index == national_id_index)
    )


async def find_participant_ids(
    session: AsyncSession, national_id_indexes: Iterable[str]
) -> dict[str, uuid.UUID]:
    """The participants with these national id indexes, by index (unknown ones left out)."""
    wanted = set(national_id_indexes)
    if not wanted:
        return {}
    rows = await session.execute(
        select(Participant.national_id_index, Participant.id).where(
            Participant.national_id_index.in_(wanted)
        )
    )
    return {index: participant_id for index, participant_id in rows.all()}


async def registered_data_keys(
    session: AsyncSession, participant_ids: Iterable[uuid.UUID], *, orgnr: str
) -> dict[uuid.UUID, tuple[str, bytes]]:
    """The wrapped data keys (key id, wrapped key) of those of the participants the
    organisation registered; unknown, shredded and others' participants are left out."""
    wanted = set(participant_ids)
    if not wanted:
        return {}
    rows = await session.execute(
        select(ParticipantKey.participant_id, ParticipantKey.kid, ParticipantKey.wrapped_key)
        .join(
            Registration,
            and_(
                Registration.participant_id == ParticipantKey.participant_id,
                Registration.orgnr == orgnr,
            ),
        )
        .where(ParticipantKey.participant_id.in_(wanted))
    )
    return {participant_id: (kid, wrapped) for participant_id, kid, wrapped in rows.all()}


async def insert_participant(
    session: AsyncSession,
    *,
    participant_id: uuid.UUID,
    national_id_index: str,
    national_id_sealed: bytes,
    key_id: str,
    wrapped_key: bytes,
    now: datetime,
) -> bool:
    """Insert a new participant and their data key; False if the national id is already known
    (another request may have registered the same person a moment ago)."""
    try:
        async with session.begin_nested():
            session.add(
                Participant(
                    id=participant_id,
                    national_id_index=national_id_index,
                    national_id_sealed=national_id_sealed,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            session.add(
                ParticipantKey(participant_id=participant_id, kid=key_id, wrapped_key=wrapped_key)
            )
    except IntegrityError:
        return False
    return True


@dataclass(frozen=True)
class ReadableParticipant:
    version: int
    key_id: str
    wrapped_key: bytes
    relationships: frozenset[str]


# The read path's statements are built once: building them per request cost more CPU
# than running them.
_PARTICIPANT_ID = bindparam("participant_id", type_=Uuid())
_ORGNR = bindparam("orgnr", type_=String())
_STAFF_ID = bindparam("staff_id", type_=Uuid())
_UNIT_ID = bindparam("unit_id", type_=Uuid())
_NOW = bindparam("now", type_=UtcDateTime())
_CURRENT_ASSIGNMENT = and_(
    Assignment.participant_id == _PARTICIPANT_ID,
    Assignment.orgnr == _ORGNR,
    Assignment.valid_from <= _NOW,
    or_(Assignment.valid_to.is_(None), Assignment.valid_to > _NOW),
)
_READABLE_PARTICIPANT = (
    select(
        Participant.version,
        ParticipantKey.kid,
        ParticipantKey.wrapped_key,
        exists()
        .where(
            Registration.participant_id == _PARTICIPANT_ID,
            Registration.orgnr == _ORGNR,
        )
        .correlate(None)
        .label("registered"),
        # A system acts as its organisation: any current assignment there counts.
        # A staff member's own relationships are their own assignments and their unit's.
        exists()
        .where(
            _CURRENT_ASSIGNMENT,
            or_(_STAFF_ID.is_(None), Assignment.staff_id == _STAFF_ID),
        )
        .correlate(None)
        .label("assigned"),
        exists()
        .where(_CURRENT_ASSIGNMENT, Assignment.unit_id == _UNIT_ID)
        .correlate(None)
        .label("same_unit"),
        exists()
        .where(
            ProgrammeParticipation.participant_id == _PARTICIPANT_ID,
            ProgrammeParticipation.orgnr == _ORGNR,
            ProgrammeParticipation.status.in_(("planned", "active")),
            or_(
                ProgrammeParticipation.ends_on.is_(None),
                ProgrammeParticipation.ends_on >= bindparam("today", type_=Date()),
            ),
        )
        .correlate(None)
        .label("programme"),
    )
    .join(ParticipantKey, ParticipantKey.participant_id == Participant.id)
    .where(Participant.id == _PARTICIPANT_ID)
)
RELATIONSHIPS = ("registered", "assigned", "same_unit", "programme")
_ATTRIBUTES = select(Attribute).where(Attribute.participant_id == _PARTICIPANT_ID)


async def get_readable_participant(
    session: AsyncSession,
    participant_id: uuid.UUID,
    *,
    orgnr: str | None,
    staff_id: uuid.UUID | None = None,
    unit_id: uuid.UUID | None = None,
    now: datetime,
) -> ReadableParticipant | None:
    """What a read needs besides the attributes, in one query: None if unknown or shredded.
    `relationships` are the caller's to the participant at `now`."""
    parameters = {
        "participant_id": participant_id,
        "orgnr": orgnr,
        "staff_id": staff_id,
        "unit_id": unit_id,
        "now": now,
        "today": now.date(),
    }
    row = (await session.execute(_READABLE_PARTICIPANT, parameters)).one_or_none()
    if row is None:
        return None
    held = frozenset(name for name in RELATIONSHIPS if row._mapping[name])
    return ReadableParticipant(row[0], row[1], row[2], held)


async def get_wrapped_key(
    session: AsyncSession, participant_id: uuid.UUID
) -> ParticipantKey | None:
    return await session.get(ParticipantKey, participant_id)


async def add_registration(
    session: AsyncSession, *, participant_id: uuid.UUID, orgnr: str, now: datetime
) -> bool:
    """Register the organisation with the participant; False if it already was."""
    try:
        async with session.begin_nested():
            session.add(Registration(participant_id=participant_id, orgnr=orgnr, registered_at=now))
    except IntegrityError:
        return False
    return True


async def list_attributes_of(
    session: AsyncSession, participant_ids: Sequence[uuid.UUID], *, fields: Sequence[str]
) -> list[Attribute]:
    """The attributes of these fields of many participants at once."""
    if not participant_ids:
        return []
    statement = select(Attribute).where(
        Attribute.participant_id.in_(participant_ids), Attribute.field.in_(fields)
    )
    return list((await session.scalars(statement)).all())


async def list_attributes(session: AsyncSession, participant_id: uuid.UUID) -> list[Attribute]:
    result = await session.scalars(_ATTRIBUTES, {"participant_id": participant_id})
    return list(result.all())


async def put_attribute(session: AsyncSession, attribute: Attribute) -> None:
    await session.merge(attribute)


async def remove_attribute(
    session: AsyncSession, *, participant_id: uuid.UUID, field: str, owner_orgnr: str
) -> None:
    await session.execute(
        delete(Attribute).where(
            Attribute.participant_id == participant_id,
            Attribute.field == field,
            Attribute.owner_orgnr == owner_orgnr,
        )
    )


async def bump_version(
    session: AsyncSession, *, participant_id: uuid.UUID, expected_version: int | None, now: datetime
) -> int | None:
    """Increase the version; with `expected_version`, only if it still matches (If-Match).
    Returns the new version, or None when the expected version was stale."""
    statement = update(Participant).where(Participant.id == participant_id)
    if expected_version is not None:
        statement = statement.where(Participant.version == expected_version)
    result = await session.execute(
        statement.values(version=Participant.version + 1, updated_at=now).returning(
            Participant.version
        )
    )
    return result.scalar_one_or_none()


async def add_unit(session: AsyncSession, unit: Unit) -> bool:
    """False when a handle is already taken."""
    try:
        async with session.begin_nested():
            session.add(unit)
    except IntegrityError:
        return False
    return True


async def get_unit(session: AsyncSession, unit_id: uuid.UUID) -> Unit | None:
    return await session.get(Unit, unit_id)


async def list_units(session: AsyncSession, *, orgnr: str) -> list[Unit]:
    result = await session.scalars(select(Unit).where(Unit.orgnr == orgnr).order_by(Unit.name))
    return list(result.all())


async def add_staff(session: AsyncSession, staff: Staff) -> None:
    session.add(staff)
    await session.flush()


async def get_staff(session: AsyncSession, staff_id: uuid.UUID) -> Staff | None:
    return await session.get(Staff, staff_id)


def _after_key(
    moment: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    after: tuple[datetime, uuid.UUID],
) -> ColumnElement[bool]:
    """Keyset pagination: the rows after the cursor's (moment, id) in (moment, id) order."""
    return or_(moment > after[0], and_(moment == after[0], row_id > after[1]))


async def open_assignment(
    session: AsyncSession, *, participant_id: uuid.UUID, orgnr: str, role: str
) -> Assignment | None:
    """The assignment in `role` from `orgnr` that has not been ended."""
    return await session.scalar(
        select(Assignment).where(
            Assignment.participant_id == participant_id,
            Assignment.orgnr == orgnr,
            Assignment.role == role,
            Assignment.valid_to.is_(None),
        )
    )


async def add_assignment(session: AsyncSession, assignment: Assignment) -> bool:
    """False when another open assignment in the role was added concurrently."""
    try:
        async with session.begin_nested():
            session.add(assignment)
    except IntegrityError:
        return False
    return True


async def list_assignments(
    session: AsyncSession,
    participant_id: uuid.UUID,
    *,
    orgnr: str | None,
    role: str | None,
    at: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Assignment]:
    """History, oldest first; `at` keeps only those in force at that moment."""
    statement = select(Assignment).where(Assignment.participant_id == participant_id)
    if orgnr is not None:
        statement = statement.where(Assignment.orgnr == orgnr)
    if role is not None:
        statement = statement.where(Assignment.role == role)
    if at is not None:
        statement = statement.where(
            Assignment.valid_from <= at,
            or_(Assignment.valid_to.is_(None), Assignment.valid_to > at),
        )
    if after is not None:
        statement = statement.where(_after_key(Assignment.recorded_at, Assignment.id, after))
    statement = statement.order_by(Assignment.recorded_at, Assignment.id).limit(limit)
    return list((await session.scalars(statement)).all())


async def add_programme(session: AsyncSession, participation: ProgrammeParticipation) -> None:
    session.add(participation)
    await session.flush()


async def get_programme(
    session: AsyncSession, participation_id: uuid.UUID
) -> ProgrammeParticipation | None:
    return await session.get(ProgrammeParticipation, participation_id)


async def list_programmes(
    session: AsyncSession,
    participant_id: uuid.UUID,
    *,
    orgnr: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[ProgrammeParticipation]:
    statement = select(ProgrammeParticipation).where(
        ProgrammeParticipation.participant_id == participant_id
    )
    if orgnr is not None:
        statement = statement.where(ProgrammeParticipation.orgnr == orgnr)
    if after is not None:
        statement = statement.where(
            _after_key(ProgrammeParticipation.recorded_at, ProgrammeParticipation.id, after)
        )
    statement = statement.order_by(
        ProgrammeParticipation.recorded_at, ProgrammeParticipation.id
    ).limit(limit)
    return list((await session.scalars(statement)).all())


# Built once per dialect, with the values bound at execution: building the INSERT for each
# event cost more CPU than running it (a batch records up to 1,000).
_INSERT_EVENT = {
    name: dialect.insert(Event.__table__)
    .on_conflict_do_nothing(index_elements=["source_orgnr", "idempotency_key"])
    .returning(Event.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_EVENT_COLUMNS = tuple(column.key for column in inspect(Event).column_attrs)


async def add_event(session: AsyncSession, event: Event) -> bool:
    """Insert the event; False when the organisation's idempotency key is taken (a concurrent
    request with the same key got there first).

    ON CONFLICT rather than catching the violation: on PostgreSQL a failed INSERT outside
    a savepoint would abort the whole transaction."""
    return event.id in await add_events(session, [event])


async def add_events(session: AsyncSession, events: Sequence[Event]) -> set[uuid.UUID]:
    """Insert the events in one statement (a multi-row INSERT); the ids of those inserted,
    which leave out any whose organisation's idempotency key is taken."""
    statement = _INSERT_EVENT[session.get_bind().dialect.name]
    rows = [{key: getattr(event, key) for key in _EVENT_COLUMNS} for event in events]
    return set((await session.execute(statement, rows)).scalars().all())


async def find_event_by_key(
    session: AsyncSession, *, orgnr: str, idempotency_key: str
) -> Event | None:
    return await session.scalar(
        select(Event).where(Event.source_orgnr == orgnr, Event.idempotency_key == idempotency_key)
    )


async def find_events_by_keys(
    session: AsyncSession, *, orgnr: str, idempotency_keys: Iterable[str]
) -> dict[str, Event]:
    """The organisation's events recorded under these idempotency keys, by key."""
    wanted = set(idempotency_keys)
    if not wanted:
        return {}
    found = await session.scalars(
        select(Event).where(Event.source_orgnr == orgnr, Event.idempotency_key.in_(wanted))
    )
    return {event.idempotency_key: event for event in found if event.idempotency_key}


async def event_participants(
    session: AsyncSession, event_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """Each of the events' participant, by event id (unknown events left out)."""
    wanted = set(event_ids)
    if not wanted:
        return {}
    rows = await session.execute(select(Event.id, Event.participant_id).where(Event.id.in_(wanted)))
    return {event_id: participant_id for event_id, participant_id in rows.all()}


async def list_events(
    session: AsyncSession,
    participant_id: uuid.UUID,
    *,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Event]:
    """The timeline in the order things happened: by occurred_at, then id."""
    statement = select(Event).where(Event.participant_id == participant_id)
    if after is not None:
        statement = statement.where(_after_key(Event.occurred_at, Event.id, after))
    statement = statement.order_by(Event.occurred_at, Event.id).limit(limit)
    return list((await session.scalars(statement)).all())


async def list_staff(session: AsyncSession) -> list[tuple[Staff, Unit]]:
    """Every staff member with their unit, by organisation and name."""
    result = await session.execute(
        select(Staff, Unit).join(Unit, Unit.id == Staff.unit_id).order_by(Staff.orgnr, Staff.name)
    )
    return [(staff, unit) for staff, unit in result.tuples()]


async def agency_types(session: AsyncSession, orgnrs: Iterable[str]) -> dict[str, str]:
    """Each named organisation's agency type (unknown organisation numbers are left out)."""
    wanted = set(orgnrs)
    if not wanted:
        return {}
    rows = await session.execute(
        select(Organisation.orgnr, Organisation.agency_type).where(Organisation.orgnr.in_(wanted))
    )
    return {orgnr: agency_type for orgnr, agency_type in rows.all()}


async def routing_handles(
    session: AsyncSession, unit_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The routing handles of those of the named units that have one (NAV's)."""
    wanted = set(unit_ids)
    if not wanted:
        return {}
    rows = await session.execute(
        select(Unit.id, Unit.routing_handle).where(
            Unit.id.in_(wanted), Unit.routing_handle.is_not(None)
        )
    )
    return {unit_id: handle for unit_id, handle in rows.all() if handle is not None}


async def get_participant(session: AsyncSession, participant_id: uuid.UUID) -> Participant | None:
    return await session.get(Participant, participant_id)


async def find_guardianship(
    session: AsyncSession, *, participant_id: uuid.UUID, guardian_index: str
) -> Guardianship | None:
    return (
        await session.scalars(
            select(Guardianship).where(
                Guardianship.participant_id == participant_id,
                Guardianship.guardian_index == guardian_index,
            )
        )
    ).one_or_none()


async def add_guardianship(session: AsyncSession, guardianship: Guardianship) -> None:
    session.add(guardianship)
    await session.flush()


async def wards(session: AsyncSession, *, guardian_index: str, now: datetime) -> list[uuid.UUID]:
    """The participants the person is guardian of at `now`."""
    rows = await session.scalars(
        select(Guardianship.participant_id)
        .where(Guardianship.guardian_index == guardian_index, Guardianship.valid_to > now)
        .order_by(Guardianship.participant_id)
    )
    return list(rows.all())


_HOLDER_COLUMNS = (
    Assignment.participant_id,
    Assignment.orgnr,
    Organisation.agency_type,
    Assignment.role,
    Assignment.unit_id,
    Unit.inbox_handle,
    Unit.routing_handle,
    Assignment.staff_id,
    Staff.name,
    Assignment.valid_from,
)


async def current_holders(
    session: AsyncSession,
    *,
    now: datetime,
    participant_id: uuid.UUID | None = None,
    role: str | None = None,
    orgnr: str | None = None,
    slots: Sequence[tuple[uuid.UUID, str, str]] = (),
    staff_id: uuid.UUID | None = None,
    inbox_of_unit: uuid.UUID | None = None,
) -> list[RowMapping]:
    """Current assignments, latest first: of one participant (in a role, at an
    organisation), of the given (participant, orgnr, role) slots, or held by a staff member
    and, with `inbox_of_unit`, by that unit's inbox."""
    statement = (
        select(*_HOLDER_COLUMNS)
        .join(Organisation, Organisation.orgnr == Assignment.orgnr)
        .join(Unit, Unit.id == Assignment.unit_id)
        .outerjoin(Staff, Staff.id == Assignment.staff_id)
        .where(
            Assignment.valid_from <= now,
            or_(Assignment.valid_to.is_(None), Assignment.valid_to > now),
        )
    )
    if participant_id is not None:
        statement = statement.where(Assignment.participant_id == participant_id)
    if role is not None:
        statement = statement.where(Assignment.role == role)
    if orgnr is not None:
        statement = statement.where(Assignment.orgnr == orgnr)
    if slots:
        statement = statement.where(
            tuple_(Assignment.participant_id, Assignment.orgnr, Assignment.role).in_(slots)
        )
    if staff_id is not None:
        held_by = Assignment.staff_id == staff_id
        if inbox_of_unit is not None:
            held_by = or_(
                held_by, and_(Assignment.staff_id.is_(None), Assignment.unit_id == inbox_of_unit)
            )
        statement = statement.where(held_by)
    statement = statement.order_by(Assignment.valid_from.desc(), Assignment.id)
    return list((await session.execute(statement)).mappings().all())


async def unit_with_organisation(
    session: AsyncSession, *, unit_id: uuid.UUID | None = None, handle: str | None = None
) -> tuple[Unit, str] | None:
    """A unit, by id or by its inbox or routing handle, and its organisation's agency type."""
    named = (
        Unit.id == unit_id
        if unit_id is not None
        else or_(Unit.inbox_handle == handle, Unit.routing_handle == handle)
    )
    row = (
        await session.execute(
            select(Unit, Organisation.agency_type)
            .join(Organisation, Organisation.orgnr == Unit.orgnr)
            .where(named)
        )
    ).one_or_none()
    return None if row is None else (row[0], row[1])


# --- programme statistics --------------------------------------------------------------------

# The timeline event that marks each outcome the statistics count.
OUTCOME_EVENTS = {"started": "opplaering.startet", "fagbrev": "fagbrev", "work": "arbeid"}


@dataclass(frozen=True)
class ProgrammeCount:
    """The programme places of one programme, county and status, and how many of them
    reached each outcome."""

    programme: str
    county: str | None
    status: str
    places: int
    started: int
    fagbrev: int
    work: int


async def programme_counts(
    session: AsyncSession, *, orgnr: str, starts_from: date, starts_before: date
) -> list[ProgrammeCount]:
    """The organisation's programme places starting in [starts_from, starts_before), grouped
    by programme, the organisation's county and status. A place reached an outcome when its
    participant's timeline holds the outcome's event (from any organisation) on or after the
    place's start date, and no later event corrects it."""
    place = ProgrammeParticipation
    if session.get_bind().dialect.name == "postgresql":
        # The start of the first day in UTC; PostgreSQL would use the session's time zone.
        since: ColumnElement[Any] | InstrumentedAttribute[date] = func.timezone(
            "UTC", cast(place.starts_on, DateTime())
        )
    else:
        # SQLite holds both as ISO text, the timestamps in UTC: '2026-08-17 22:00…' < '2026-08-18'.
        since = place.starts_on
    correction = aliased(Event)
    corrected = select(correction.corrects).where(correction.corrects.is_not(None))

    def reached(event_type: str) -> ColumnElement[int]:
        event = exists().where(
            Event.participant_id == place.participant_id,
            Event.type == event_type,
            Event.occurred_at >= since,
            Event.id.not_in(corrected),
        )
        return func.count(case((event, 1)))

    statement = (
        select(
            place.programme,
            Organisation.county,
            place.status,
            func.count().label("places"),
            *(reached(event_type).label(name) for name, event_type in OUTCOME_EVENTS.items()),
        )
        .join(Organisation, Organisation.orgnr == place.orgnr)
        .where(
            place.orgnr == orgnr,
            place.starts_on >= starts_from,
            place.starts_on < starts_before,
        )
        .group_by(place.programme, Organisation.county, place.status)
    )
    return [ProgrammeCount(**row) for row in (await session.execute(statement)).mappings()]


# ------------------------------------------------------------------------------ retention


@dataclass(frozen=True)
class FollowUp:
    """Where one participant's follow-up stands, as retention judges it."""

    participant_id: uuid.UUID
    programmes: frozenset[str]
    # A place planned or active, or an assignment not ended: someone still follows them up.
    open: bool
    # The last trace of the follow-up: a place's end, an assignment's end, a timeline record,
    # a registration, or a change to the record (whichever is latest).
    last_activity: date


async def follow_ups(session: AsyncSession, *, only: uuid.UUID | None = None) -> list[FollowUp]:
    """Every participant's follow-up (or `only` this one's), for `broen retention`."""

    def about(statement: Any, column: Any) -> Any:
        return statement if only is None else statement.where(column == only)

    latest: dict[uuid.UUID, date] = {}
    open_ids: set[uuid.UUID] = set()
    programmes: dict[uuid.UUID, set[str]] = {}

    def seen(participant_id: uuid.UUID, moment: date | datetime | None) -> None:
        if moment is None:
            return
        day = moment.date() if isinstance(moment, datetime) else moment
        if participant_id not in latest or day > latest[participant_id]:
            latest[participant_id] = day

    for participant_id, updated_at in await session.execute(
        about(select(Participant.id, Participant.updated_at), Participant.id)
    ):
        seen(participant_id, updated_at)
    places = about(
        select(
            ProgrammeParticipation.participant_id,
            ProgrammeParticipation.programme,
            ProgrammeParticipation.status,
            ProgrammeParticipation.ends_on,
            ProgrammeParticipation.recorded_at,
        ),
        ProgrammeParticipation.participant_id,
    )
    for participant_id, programme, status, ends_on, recorded_at in await session.execute(places):
        programmes.setdefault(participant_id, set()).add(programme)
        if status in ("planned", "active"):
            open_ids.add(participant_id)
        seen(participant_id, ends_on)
        seen(participant_id, recorded_at)
    assignments = about(
        select(
            Assignment.participant_id,
            func.max(Assignment.valid_to),
            func.max(Assignment.recorded_at),
            func.count().filter(Assignment.valid_to.is_(None)),
        ),
        Assignment.participant_id,
    ).group_by(Assignment.participant_id)
    for participant_id, ended, recorded, current in await session.execute(assignments):
        if current:
            open_ids.add(participant_id)
        seen(participant_id, ended)
        seen(participant_id, recorded)
    for table, column in (
        (Event, Event.recorded_at),
        (Registration, Registration.registered_at),
    ):
        grouped = about(
            select(table.participant_id, func.max(column)), table.participant_id
        ).group_by(table.participant_id)
        for participant_id, moment in await session.execute(grouped):
            seen(participant_id, moment)
    return [
        FollowUp(
            participant_id=participant_id,
            programmes=frozenset(programmes.get(participant_id, ())),
            open=participant_id in open_ids,
            last_activity=day,
        )
        for participant_id, day in latest.items()
    ]


async def delete_participant(session: AsyncSession, participant_id: uuid.UUID) -> dict[str, int]:
    """Delete the participant and everything recorded about them, their data key and the
    events about them still in the outbox included; rows deleted per table (none if gone)."""
    about = participant_id
    return await delete_in_order(
        session,
        delete(Attribute).where(Attribute.participant_id == about),
        delete(Event).where(Event.participant_id == about),
        delete(Assignment).where(Assignment.participant_id == about),
        delete(ProgrammeParticipation).where(ProgrammeParticipation.participant_id == about),
        delete(Guardianship).where(Guardianship.participant_id == about),
        delete(Registration).where(Registration.participant_id == about),
        delete(ParticipantKey).where(ParticipantKey.participant_id == about),
        outbox_about(OutboxEvent, about),
        delete(Participant).where(Participant.id == about),
    )
