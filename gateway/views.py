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
from typing import Literal

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


# --- threads -------------------------------------------------------------------------------


class PartyView(BaseModel):
    """One side of a thread: the organisation, the role, the unit by its handle (a NAV unit
    by its neutral routing handle for a strengt fortrolig participant), and the person only
    where the policy releases who holds the role (always within your own organisation)."""

    orgnr: str
    agency_type: str
    role: Role | None = Field(description="None: a unit's inbox, or an organisation's system.")
    unit_handle: str | None
    staff_id: uuid.UUID | None
    staff_name: str | None


class HandoverView(BaseModel):
    """The recipient role changed hands (a new assignment): the thread followed it."""

    at: datetime
    from_staff_id: uuid.UUID | None
    to_staff_id: uuid.UUID | None


class ThreadView(BaseModel):
    id: uuid.UUID
    participant_id: uuid.UUID
    purpose: str
    subject: str
    me: Literal["initiator", "recipient"] = Field(description="Your side of the thread.")
    initiator: PartyView
    recipient: PartyView
    created_at: datetime
    last_message_at: datetime
    message_count: int
    unread: int = Field(description="Messages from the other side you have not marked read.")
    waiting_on: Literal["initiator", "recipient"] | None = Field(
        description="Whose turn it is to answer (None once closed)."
    )
    waiting_on_me: bool
    overdue: bool = Field(
        description="Unanswered by the recipient past the working days allowed; the "
        "recipient unit's inbox has been told."
    )
    closed_at: datetime | None
    handovers: list[HandoverView]


class ThreadViewList(BaseModel):
    items: list[ThreadView]
    next_cursor: str | None


class MessageView(BaseModel):
    id: uuid.UUID
    thread_id: uuid.UUID
    side: Literal["initiator", "recipient"]
    mine: bool = Field(description="Sent by your side.")
    sender_orgnr: str
    sender_staff_id: uuid.UUID | None
    body: str
    sent_at: datetime
    read_by_other_side: bool = Field(description="The read receipt.")


class MessageViewList(BaseModel):
    items: list[MessageView]
    next_cursor: str | None
