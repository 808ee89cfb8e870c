"""The records about a participant as one caller sees them after projection: the public
response models of the gateway's lists.

A field the policy withholds is absent and named in `withheld` with the reason shown to
this caller; a record of which nothing is released is left out of the list. Ids, the
organisation and times are shown with every record that is listed. The participant itself
is `ParticipantRead`, which already has this shape.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, Field

from services.participant.schemas import EventRead, ProgrammeStatus, Withheld
from shared.vocabulary import Role

WITHHELD = (
    "Fields of the record you may not see, and why: `no_consent` (a consent "
    "would release it) or `not_shared`; your own organisation's fields give the precise "
    "reason."
)


class AssignmentView(BaseModel):
    id: uuid.UUID
    participant_id: uuid.UUID
    orgnr: str
    recorded_at: datetime
    source_event_id: uuid.UUID | None = None
    role: Role | None = None
    staff_id: uuid.UUID | None = None
    unit_id: str | None = Field(
        None,
        description="The unit's id; for a person with strengt fortrolig adresse, other "
        "organisations get a NAV unit's neutral routing handle instead.",
    )
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    withheld: list[Withheld] = Field(default_factory=list, description=WITHHELD)


class AssignmentViewList(BaseModel):
    items: list[AssignmentView]
    next_cursor: str | None = None


class ProgrammeView(BaseModel):
    id: uuid.UUID
    participant_id: uuid.UUID
    orgnr: str
    recorded_at: datetime
    programme: str | None = None
    starts_on: date | None = None
    ends_on: date | None = None
    status: ProgrammeStatus | None = None
    withheld: list[Withheld] = Field(default_factory=list, description=WITHHELD)


class ProgrammeViewList(BaseModel):
    items: list[ProgrammeView]
    next_cursor: str | None = None


class EventView(EventRead):
    """`payload` holds only the released fields; a NAV unit's id may be its routing handle."""

    withheld: list[Withheld] = Field(default_factory=list, description=WITHHELD)


class TimelineView(BaseModel):
    items: list[EventView]
    next_cursor: str | None = None
