"""Wire models of the messaging service. The gateway parses the public bodies with these
same models (so a bad body is refused before anything is called) and projects the reads."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError
from stdnum.no import fodselsnummer

from services.participant.schemas import Holder, RouteQuery
from shared.vocabulary import Adressebeskyttelse, Role

MAX_BODY_CHARACTERS = 10_000
MAX_SUBJECT_CHARACTERS = 200

Side = Literal["initiator", "recipient"]

# Eleven digits, optionally written "DDMMYY NNNNN", not part of a longer number.
_NATIONAL_ID_CANDIDATE = re.compile(r"(?<![0-9])([0-9]{6})[ .-]?([0-9]{5})(?![0-9])")


def national_id_positions(text: str) -> list[int]:
    """Where the text holds a valid fødselsnummer or D-nummer (its character offsets)."""
    return [
        match.start()
        for match in _NATIONAL_ID_CANDIDATE.finditer(text)
        if fodselsnummer.is_valid(match.group(1) + match.group(2))
    ]


def _without_national_id(text: str) -> str:
    positions = national_id_positions(text)
    if positions:
        # The position, never the value: the error goes back to the sender and into logs.
        raise PydanticCustomError(
            "national_id_in_text",
            "holds a fødselsnummer or D-nummer at position {position}; refer to the "
            "participant by the thread instead",
            {"position": positions[0]},
        )
    return text


Subject = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_SUBJECT_CHARACTERS),
    AfterValidator(_without_national_id),
]
Body = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_BODY_CHARACTERS),
    AfterValidator(_without_national_id),
]


# --- what callers send (public, through the gateway) ----------------------------------------


class Addressee(RouteQuery):
    """A role (`{"role": "veileder"}`, optionally at one organisation) or a unit's inbox
    (`{"unit_id": ...}`) — never a person: the assignments decide who that is."""


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    participant_id: uuid.UUID
    purpose: str = Field(max_length=40, description="The purpose every message is under.")
    to: Addressee
    subject: Subject
    body: Body = Field(description=f"The first message, at most {MAX_BODY_CHARACTERS} characters.")


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Body


# --- what the gateway sends the service (internal) ------------------------------------------


class ThreadOpen(BaseModel):
    """A thread the gateway has decided may be opened: the recipient it resolved and the
    participant's protection as the decision saw it."""

    model_config = ConfigDict(extra="forbid")

    participant_id: uuid.UUID
    purpose: str
    subject: Subject
    body: Body
    recipient: Holder
    initiator_role: Role | None
    protection: Adressebeskyttelse | None


class MessagePost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: Body


# --- reads ----------------------------------------------------------------------------------


class Party(BaseModel):
    """One side of a thread. `staff_*` are None for a unit's inbox or an organisation's system."""

    orgnr: str
    agency_type: str
    role: Role | None
    unit_id: uuid.UUID | None
    inbox_handle: str | None
    routing_handle: str | None
    staff_id: uuid.UUID | None
    staff_name: str | None


class Handover(BaseModel):
    """The recipient side changed hands: a new assignment in the role."""

    from_staff_id: uuid.UUID | None
    from_unit_id: uuid.UUID
    to_staff_id: uuid.UUID | None
    to_unit_id: uuid.UUID
    at: datetime


class ThreadRead(BaseModel):
    """A thread as one of its sides sees it (internal: the gateway projects it)."""

    id: uuid.UUID
    participant_id: uuid.UUID
    purpose: str
    subject: str
    me: Side
    initiator: Party
    recipient: Party
    protection: Adressebeskyttelse | None
    created_at: datetime
    last_message_at: datetime
    message_count: int
    unread: int
    waiting_on: Side | None
    overdue: bool
    closed_at: datetime | None
    handovers: list[Handover] = Field(default_factory=list)


class ThreadList(BaseModel):
    items: list[ThreadRead]
    next_cursor: str | None


class MessageRead(BaseModel):
    id: uuid.UUID
    thread_id: uuid.UUID
    side: Side
    sender_orgnr: str
    sender_staff_id: uuid.UUID | None
    body: str
    sent_at: datetime
    read_by_other_side: bool


class MessageList(BaseModel):
    items: list[MessageRead]
    next_cursor: str | None
