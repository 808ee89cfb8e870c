"""Wire models of the participant service. The gateway parses upstream answers into
these same models before projecting them, so the contract is written once."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    model_validator,
)
from stdnum.no import fodselsnummer, orgnr

from shared.vocabulary import Adressebeskyttelse, AgencyType, Role

Verification = Literal["self_reported", "verified"]


def _valid_national_id(value: str) -> str:
    # stdnum's messages never contain the number; ours must not either.
    try:
        return str(fodselsnummer.validate(value))
    except Exception:
        raise ValueError("not a valid fødselsnummer or D-nummer") from None


def _valid_orgnr(value: str) -> str:
    try:
        return str(orgnr.validate(value))
    except Exception:
        raise ValueError("not a valid organisasjonsnummer") from None


NationalId = Annotated[str, StringConstraints(max_length=20), AfterValidator(_valid_national_id)]
Orgnr = Annotated[str, StringConstraints(max_length=20), AfterValidator(_valid_orgnr)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ]{8,20}$")]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")

    street: Text
    postal_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
    city: Text
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = "NO"


class OrganisationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orgnr: Orgnr
    name: Text
    agency_type: AgencyType
    county: Text | None = None


class OrganisationRead(BaseModel):
    orgnr: str
    name: str
    agency_type: AgencyType
    county: str | None


class OrganisationList(BaseModel):
    items: list[OrganisationRead]
    next_cursor: str | None = None


UnitKind = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,59}$")]


class UnitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orgnr: Orgnr
    name: Text
    kind: UnitKind = Field(description="e.g. nav_kontor, nav_tiltak, skole, ot, voksenopplaering")


class UnitRead(BaseModel):
    id: uuid.UUID
    orgnr: str
    name: str
    kind: str
    inbox_handle: str = Field(description="Where messages to the unit land.")
    routing_handle: str | None = Field(
        description="NAV units only: a neutral handle other agencies see for protected persons."
    )


class UnitList(BaseModel):
    items: list[UnitRead]
    next_cursor: str | None = None


class StaffCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    orgnr: Orgnr
    unit_id: uuid.UUID
    name: Text
    roles: list[Role] = Field(min_length=1)
    skjermet_authorised: bool = False


class StaffRead(BaseModel):
    id: uuid.UUID
    orgnr: str
    unit_id: uuid.UUID
    name: str
    roles: list[Role]
    skjermet_authorised: bool


class _Attributes(BaseModel):
    """The attributes a caller may record; each gets the caller's provenance."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = None
    phone: Phone | None = None
    email: Email | None = None
    address: Address | None = None
    adressebeskyttelse: Adressebeskyttelse | None = None
    skjermet: bool | None = None


class ParticipantCreate(_Attributes):
    national_id: NationalId
    name: Text
    source_system: Text = Field(description="The system the data came from, e.g. a school's SIS.")
    verification: Verification = "self_reported"


class ParticipantUpdate(_Attributes):
    """Changes the caller organisation's own values; a field set to null removes its value."""

    source_system: Text
    verification: Verification = "self_reported"


class ParticipantLookup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    national_id: NationalId


class Provenance(BaseModel):
    owner_orgnr: str
    owner_agency_type: AgencyType
    source_system: str
    verification: Verification
    recorded_at: datetime


class Withheld(BaseModel):
    field: str
    reason: str


class ParticipantRead(BaseModel):
    """A participant as one caller sees it. Fields the caller may not see are absent
    and listed in `withheld`; the national id is never returned."""

    id: uuid.UUID
    name: str | None = None
    birth_date: date | None = None
    phone: str | None = None
    email: str | None = None
    address: Address | None = None
    adressebeskyttelse: Adressebeskyttelse | None = None
    skjermet: bool | None = None
    provenance: dict[str, Provenance] = Field(default_factory=dict)
    withheld: list[Withheld] = Field(default_factory=list)


# Every field of ParticipantRead that carries an attribute value.
ATTRIBUTE_FIELDS: tuple[str, ...] = (
    "name",
    "birth_date",
    "phone",
    "email",
    "address",
    "adressebeskyttelse",
    "skjermet",
)


class AssignmentCreate(BaseModel):
    """Assign a staff member, or a unit (its inbox), to a role for the participant.
    Ends the previous assignment in that role from your organisation."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    staff_id: uuid.UUID | None = None
    unit_id: uuid.UUID | None = None
    valid_from: AwareDatetime | None = Field(None, description="Defaults to now.")

    @model_validator(mode="after")
    def _one_assignee(self) -> AssignmentCreate:
        if (self.staff_id is None) == (self.unit_id is None):
            raise ValueError("give exactly one of staff_id and unit_id")
        return self


class AssignmentRead(BaseModel):
    id: uuid.UUID
    participant_id: uuid.UUID
    orgnr: str
    role: Role
    staff_id: uuid.UUID | None
    unit_id: uuid.UUID
    valid_from: datetime
    valid_to: datetime | None
    recorded_at: datetime
    source_event_id: uuid.UUID | None = None


class AssignmentList(BaseModel):
    items: list[AssignmentRead]
    next_cursor: str | None = None


ProgrammeStatus = Literal["planned", "active", "completed", "discontinued"]
ProgrammeCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,79}$")]


class ProgrammeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    programme: ProgrammeCode = Field(
        description="e.g. opplaeringstiltak-lengre-varighet, introduksjonsprogram, vgo"
    )
    starts_on: date
    ends_on: date | None = None
    status: ProgrammeStatus = "active"

    @model_validator(mode="after")
    def _ends_after_start(self) -> ProgrammeCreate:
        if self.ends_on is not None and self.ends_on < self.starts_on:
            raise ValueError("ends_on is before starts_on")
        return self


class ProgrammeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ends_on: date | None = None
    status: ProgrammeStatus | None = None


class ProgrammeRead(BaseModel):
    id: uuid.UUID
    participant_id: uuid.UUID
    orgnr: str
    programme: str
    starts_on: date
    ends_on: date | None
    status: ProgrammeStatus
    recorded_at: datetime


class ProgrammeList(BaseModel):
    items: list[ProgrammeRead]
    next_cursor: str | None = None


# `kartlegging`, `inntak.vedtak`, `8_uker_utenfor`: lower case words joined by dots.
EventTypeName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)*$", max_length=80)
]


class EventCreate(BaseModel):
    """A fact for the participant's timeline. Events are never changed: a correction is a
    new event that names the one it corrects."""

    model_config = ConfigDict(extra="forbid")

    type: EventTypeName = Field(description="One of the types listed by GET /api/v1/event-types.")
    occurred_at: AwareDatetime
    payload: dict[str, Any] = Field(
        default_factory=dict, description="The fields the event type declares, and no others."
    )
    source_system: Text = Field(description="The system the event came from.")
    verification: Verification = "self_reported"
    corrects: uuid.UUID | None = Field(None, description="An earlier event this one corrects.")


class EventSource(BaseModel):
    orgnr: str
    agency_type: AgencyType
    system: str
    verification: Verification


class EventRead(BaseModel):
    id: uuid.UUID
    participant_id: uuid.UUID
    type: str
    occurred_at: datetime
    recorded_at: datetime
    source: EventSource
    payload: dict[str, Any]
    corrects: uuid.UUID | None = None

    @property
    def orgnr(self) -> str:
        """The organisation that recorded the event (its owner, for the personvern hook)."""
        return self.source.orgnr


class Timeline(BaseModel):
    items: list[EventRead]
    next_cursor: str | None = None


EVENT_BATCH_MAX_ITEMS = 1000
IdempotencyKeyValue = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class EventBatchItem(EventCreate):
    """One event of a batch: the participant by id or by national id (exactly one), and
    the item's own idempotency key."""

    idempotency_key: IdempotencyKeyValue = Field(
        description="A resend with the same key and content answers 200 with the first "
        "event; the same key with other content is refused (409)."
    )
    participant_id: uuid.UUID | None = None
    national_id: NationalId | None = Field(
        None, description="A participant your organisation registered; never returned."
    )

    @model_validator(mode="after")
    def _one_participant(self) -> EventBatchItem:
        if (self.participant_id is None) == (self.national_id is None):
            raise ValueError("give exactly one of participant_id and national_id")
        return self


# An item as sent: each is validated on its own, so one malformed item is refused alone
# rather than failing the request. Documented as what it must be.
EventBatchItemAsSent = Annotated[
    Any, PlainValidator(lambda item: item, json_schema_input_type=EventBatchItem)
]


class EventBatch(BaseModel):
    """Up to 1,000 timeline events, each accepted or refused on its own."""

    model_config = ConfigDict(extra="forbid")

    items: list[EventBatchItemAsSent] = Field(min_length=1, max_length=EVENT_BATCH_MAX_ITEMS)


class ItemProblem(BaseModel):
    """Why an item was refused: the problem details (RFC 9457) the single push would have
    answered with."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


class EventBatchItemResult(BaseModel):
    index: int = Field(description="The item's position in the request, from 0.")
    idempotency_key: str | None = Field(description="The item's key (null if it gave none).")
    status: int = Field(
        description="201 recorded; 200 a resend of an event recorded before with the same key "
        "and content; 4xx refused, as `problem` says."
    )
    event_id: uuid.UUID | None = None
    participant_id: uuid.UUID | None = None
    problem: ItemProblem | None = None


class EventBatchResult(BaseModel):
    """One result per item, in request order. Accepted items are committed."""

    items: list[EventBatchItemResult]
    accepted: int
    refused: int


class DecisionFacts(BaseModel):
    """What the gateway's personvern decision needs about a page of records besides the
    records themselves, sent with the page so one call answers (internal: the gateway
    drops it before anything leaves)."""

    relationships: list[str] = Field(description="The caller's, to the participant, now.")
    adressebeskyttelse: Adressebeskyttelse | None = None
    skjermet: bool = False
    birth_date: date | None = None
    # Every organisation the page names, by organisation number.
    agency_types: dict[str, AgencyType] = Field(default_factory=dict)
    # The NAV units the page names, by id: their neutral routing handles.
    routing_handles: dict[uuid.UUID, str] = Field(default_factory=dict)
    # Timeline pages: per event type on the page, each payload field's data category.
    payload_categories: dict[str, dict[str, str]] = Field(default_factory=dict)


class AssignmentPage(AssignmentList):
    facts: DecisionFacts


class ProgrammePage(ProgrammeList):
    facts: DecisionFacts


class TimelinePage(Timeline):
    facts: DecisionFacts


def eighteenth_birthday(born: date) -> datetime:
    """When parental responsibility ends: a guardianship, and a guardian's consent, end then."""
    try:
        day = born.replace(year=born.year + 18)
    except ValueError:  # born on 29 February
        day = date(born.year + 18, 3, 1)
    return datetime.combine(day, time(), tzinfo=UTC)


class GuardianCreate(BaseModel):
    """A person with parental responsibility for the (minor) participant."""

    model_config = ConfigDict(extra="forbid")

    national_id: NationalId = Field(description="The guardian's; never returned.")
    source: Literal["folkeregisteret", "staff"] = Field(
        description="Where it is known from: the population register, or documentation "
        "staff have seen."
    )


class GuardianRead(BaseModel):
    id: uuid.UUID
    participant_id: uuid.UUID
    source: str
    recorded_by_orgnr: str
    recorded_at: datetime
    valid_to: datetime = Field(description="The participant's 18th birthday.")


class CitizenLookup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    national_id: NationalId


class CitizenIdentity(BaseModel):
    """Who a person with this national id is to Broen: a participant, and/or a guardian."""

    participant_id: uuid.UUID | None
    wards: list[uuid.UUID]
    # A stable pseudonym of the person (keyed hash of the national id): it names a guardian
    # in the tokens they act with, never the number itself.
    pseudonym: str


# --- message routing (read by the gateway and the messaging service) -------------------------


class RouteQuery(BaseModel):
    """Who a message about the participant reaches: the current holder of a role (at one
    organisation, if named), or a unit's inbox by id or handle (a NAV unit's routing handle
    too, as other agencies see it for a protected person)."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    orgnr: Orgnr | None = Field(None, description="With `role`: only this organisation's.")
    unit_id: uuid.UUID | None = None
    unit_handle: str | None = Field(None, max_length=80)

    @model_validator(mode="after")
    def _role_or_unit(self) -> RouteQuery:
        given = [self.role, self.unit_id, self.unit_handle]
        if sum(value is not None for value in given) != 1:
            raise ValueError("address one of: a role, a unit_id or a unit_handle")
        if self.role is None and self.orgnr is not None:
            raise ValueError("orgnr goes with role; a unit names its organisation")
        return self


class Holder(BaseModel):
    """Who holds a role for the participant now (a staff member, or a unit's inbox when no
    person is assigned), or a unit addressed directly (`role` None)."""

    participant_id: uuid.UUID
    orgnr: str
    agency_type: AgencyType
    role: Role | None
    unit_id: uuid.UUID
    inbox_handle: str
    routing_handle: str | None
    staff_id: uuid.UUID | None
    staff_name: str | None
    since: datetime | None = Field(description="When the assignment began (None: a unit).")


class RouteAnswer(BaseModel):
    """The recipient (None when nobody holds the role) and the facts the gateway decides the
    message with: the sender's relationships and the participant's flags."""

    recipient: Holder | None
    facts: DecisionFacts


class Slot(BaseModel):
    """A role at an organisation for a participant: where a thread addressed to a role lands,
    whoever holds it."""

    model_config = ConfigDict(frozen=True)

    participant_id: uuid.UUID
    orgnr: str
    role: Role


class HoldersQuery(BaseModel):
    slots: list[Slot] = Field(max_length=500)


class HoldersAnswer(BaseModel):
    """The current holder of each slot that has one; a slot nobody holds is left out."""

    holders: list[Holder]


class Caseload(BaseModel):
    """The slots a staff member holds now: their own assignments and, for a unit's contact
    person or opplæringskoordinator, those held by their unit's inbox."""

    staff_id: uuid.UUID
    unit_id: uuid.UUID
    inbox_roles: bool
    holders: list[Holder]


# --- what the gateway projects domain events with (internal) --------------------------------


class EventFactsQuery(BaseModel):
    """The participants, organisations, units and timeline event types a page of domain
    events names; the caller is the reader the events are projected for."""

    participant_ids: list[uuid.UUID] = Field(max_length=1000)
    orgnrs: list[str] = Field(default_factory=list, max_length=1000)
    unit_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)
    event_types: list[str] = Field(default_factory=list, max_length=1000)


class SubjectFacts(BaseModel):
    relationships: list[str] = Field(description="The caller's, to the participant, now.")
    adressebeskyttelse: Adressebeskyttelse | None = None
    skjermet: bool = False
    birth_date: date | None = None


class EventFacts(BaseModel):
    # Only participants that exist: events about an unknown or shredded one go to no one.
    participants: dict[uuid.UUID, SubjectFacts]
    agency_types: dict[str, AgencyType] = Field(default_factory=dict)
    routing_handles: dict[uuid.UUID, str] = Field(default_factory=dict)
    payload_categories: dict[str, dict[str, str]] = Field(default_factory=dict)


# --- programme statistics (aggregates only) ------------------------------------------------


class StatisticsQuery(BaseModel):
    """The programme places counted: those starting in one calendar year. Only whole years,
    one at a time: two overlapping periods could be subtracted from each other to recover
    what suppression hides, and years do not overlap (a reader's own sum of several years
    shows nothing the years do not)."""

    model_config = ConfigDict(extra="forbid")

    year: int = Field(ge=2000, le=2100, description="The year the counted places started in.")

    @property
    def starts_from(self) -> date:
        return date(self.year, 1, 1)

    @property
    def starts_before(self) -> date:
        return date(self.year + 1, 1, 1)


class Count(BaseModel):
    value: int | None = Field(description="null when suppressed.")
    suppressed: bool


class Counts(BaseModel):
    """The measures of one group of programme places. An outcome counts when the
    participant's timeline holds the event on or after the place's start date (UTC), from
    any organisation, and no later event corrects it."""

    places: Count = Field(description="Programme places starting in the period.")
    started: Count = Field(description="Of them, with `opplaering.startet` (training started).")
    fagbrev: Count = Field(description="Of them, with `fagbrev` (trade certificate awarded).")
    work: Count = Field(description="Of them, with `arbeid` (outcome: in work).")


class ProgrammeCounts(BaseModel):
    programme: str
    county: str | None = Field(
        description="The county of the organisation running the places; null if not recorded."
    )
    by_status: dict[ProgrammeStatus, Counts] = Field(
        description="By the place's status now; `completed` holds the completed places."
    )
    total: Counts


class Suppression(BaseModel):
    threshold: int = Field(description="Counts from 1 to threshold - 1 are suppressed.")
    rule: str


class ProgrammeStatistics(BaseModel):
    """Counts of the programme places an organisation runs, by programme, county and status,
    with the outcomes reached; small counts suppressed. No individual data."""

    orgnr: str = Field(description="The organisation whose places these are (the caller's).")
    period: StatisticsQuery
    programmes: list[ProgrammeCounts]
    by_status: dict[ProgrammeStatus, Counts] = Field(description="The totals per status.")
    total: Counts
    suppression: Suppression
