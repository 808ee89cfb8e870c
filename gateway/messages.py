"""Threads at the gateway: a message about a participant is addressed to a role or a unit's
inbox, routed from the assignments, and crosses to another organisation only with a basis
for the `messages` category and the thread's purpose — checked when the thread is opened
and again for every message. Each delivery across organisations is an audit entry (who
received it, on what basis; never the text). Delivered messages stay readable by their
recipients after a withdrawal; new ones are refused.

What another organisation's side is shown is projected here: the unit by its inbox handle
(a NAV unit by its neutral routing handle for a strengt fortrolig participant), and a
person only where the policy releases who holds the role (`assignment.staff_id`).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, NamedTuple

from fastapi import APIRouter, Depends, Request, Response

from gateway.clients import ParticipantClient, ParticipantsDep
from gateway.deps import require_scope
from gateway.personvern import Personvern, PersonvernDep, audit_record
from gateway.policy import (
    Context,
    Decision,
    DecisionRequest,
    Grants,
    Owner,
    Subject,
    decide,
    decide_crossing,
    gate_reason,
    require_purpose,
    subject_of,
)
from gateway.policy.decide import CONSENT_UNAVAILABLE
from gateway.views import (
    HandoverView,
    MessageView,
    MessageViewList,
    PartyView,
    ThreadView,
    ThreadViewList,
)
from services.messaging.schemas import (
    MessageCreate,
    MessageList,
    MessagePost,
    MessageRead,
    Party,
    Side,
    ThreadCreate,
    ThreadList,
    ThreadOpen,
    ThreadRead,
)
from services.participant.errors import ParticipantNotFound
from services.participant.schemas import Holder
from shared.app import json_response
from shared.clients import Upstream, UpstreamProblem
from shared.internal_auth import CallerContext
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit, page_params
from shared.problems import Forbidden, ServiceUnavailable, ValidationProblem, problem_responses
from shared.vocabulary import AGENCY_TYPES

MESSAGES = "messages"

router = APIRouter(
    prefix="/api/v1/threads",
    tags=["messages"],
    responses=problem_responses(400, 401, 403, 404, 422, 503),
)

Messenger = Annotated[CallerContext, Depends(require_scope("messages"))]


class NoBasisForMessages(Forbidden):
    type = "no-basis-for-messages"
    title = "No basis for messages about this participant"

    def __init__(self, purpose: str) -> None:
        # The same words whether or not anyone holds the role: no oracle of who knows whom.
        super().__init__(
            "Messages about this participant between your organisation and the recipient's "
            f"need the participant's consent for the category '{MESSAGES}' and the purpose "
            f"'{purpose}' (or a legal basis registered for it). Ask for consent with "
            "POST /api/v1/consent-requests.",
            category=MESSAGES,
            purpose=purpose,
        )


class NoRecipient(ValidationProblem):
    type = "no-recipient"
    title = "Nobody holds the role"

    def __init__(self, role: str | None) -> None:
        super().__init__(
            f"Nobody holds the role '{role}' for this participant now. Address a unit's "
            'inbox instead: {"to": {"unit_id": ...}} or {"to": {"unit_handle": ...}}.',
            errors=[{"field": "to.role", "message": "nobody holds it now"}],
        )


def _messaging(request: Request) -> Upstream:
    upstream: Upstream = request.app.state.messaging
    return upstream


class BirthDates:
    """Participants' birth dates, held for a while: the basis for a reply needs one (whose
    consent counts at which age), it does not change, and reading the participant for it
    would double a reply's cost. Bounded; an entry is read again after `ttl_seconds`."""

    def __init__(self, ttl_seconds: float = 600.0, max_entries: int = 50_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._held: dict[uuid.UUID, tuple[date | None, float]] = {}

    async def of(
        self, participants: ParticipantClient, caller: CallerContext, participant_id: uuid.UUID
    ) -> date | None:
        held = self._held.get(participant_id)
        if held is not None and held[1] > time.monotonic():
            return held[0]
        answer = await participants.read(caller, participant_id)
        birth_date = answer.participant.birth_date
        if len(self._held) >= self._max:
            for oldest in list(self._held)[: self._max // 10]:
                del self._held[oldest]
        self._held[participant_id] = (birth_date, time.monotonic() + self._ttl)
        return birth_date


def _birth_dates(request: Request) -> BirthDates:
    birth_dates: BirthDates = request.app.state.birth_dates
    return birth_dates


MessagingDep = Annotated[Upstream, Depends(_messaging)]
BirthDatesDep = Annotated[BirthDates, Depends(_birth_dates)]


# --- the basis for a delivery --------------------------------------------------------------


def _receiver(party: Party | Holder) -> CallerContext:
    """The receiving side as a caller of the decision (and of its audit entry)."""
    return CallerContext(
        kind="staff",
        orgnr=party.orgnr,
        agency_type=party.agency_type,
        unit_id=str(party.unit_id) if party.unit_id else None,
        staff_id=str(party.staff_id) if party.staff_id else None,
        roles=(party.role,) if party.role else (),
    )


async def _deliver(
    personvern: Personvern,
    sender: CallerContext,
    receiver: CallerContext,
    participant_id: uuid.UUID,
    purpose: str,
    subject: Subject,
    grants: Grants,
    fields: tuple[str, ...],
) -> None:
    """Refuse a crossing without a basis (403; 503 when consents cannot be read), and
    audit one that has one before anything is stored."""
    context = Context(receiver, purpose, frozenset(), subject, grants, datetime.now(UTC))
    owner = Owner(sender.orgnr or "", sender.agency_type or "")
    decisions = [
        decide_crossing(personvern.policy, context, owner, MESSAGES, field) for field in fields
    ]
    if not decisions[0].release:
        if decisions[0].reason == CONSENT_UNAVAILABLE:
            raise ServiceUnavailable("Consents cannot be read now; nothing was sent.")
        raise NoBasisForMessages(purpose)
    if owner.orgnr != receiver.orgnr:
        decision = Decision(personvern.policy.version, "message", purpose, tuple(decisions))
        await personvern.audit.write(
            audit_record(context, participant_id, [decision], personvern.policy.version)
        )


def _any_basis(personvern: Personvern, context: Context) -> bool:
    """Whether the sender could message some agency about the participant for the purpose
    (then "nobody holds the role" tells nothing a basis does not already allow)."""
    owner = Owner(context.caller.orgnr or "", context.caller.agency_type or "")
    for agency_type in AGENCY_TYPES:
        receiver = CallerContext(kind="staff", orgnr="", agency_type=agency_type)
        hypothetical = Context(
            receiver, context.purpose, frozenset(), context.subject, context.grants, context.now
        )
        if decide_crossing(personvern.policy, hypothetical, owner, MESSAGES, "body").release:
            return True
    return False


def _initiator_role(personvern: Personvern, caller: CallerContext, purpose: str) -> str | None:
    """The sender's role the purpose is declared under (None for a system)."""
    for role in caller.roles:
        if (role, purpose) in personvern.policy.access:
            return role
    return None


# --- routes --------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=ThreadView,
    responses=problem_responses(400),
)
async def open_thread(
    data: ThreadCreate,
    caller: Messenger,
    personvern: PersonvernDep,
    participants: ParticipantsDep,
    messaging: MessagingDep,
) -> Response:
    """Open a thread about a participant with its first message, addressed to a role
    (`{"role": "veileder"}`) or a unit's inbox (`{"unit_id": ...}`), never a person: the
    participant's current assignments decide who receives it (the unit's inbox when only
    the unit is assigned)."""
    purpose = require_purpose(personvern.policy, caller, data.purpose)
    route, grants = await personvern.alongside_grants(
        data.participant_id, participants.route(caller, data.participant_id, data.to)
    )
    facts = route.facts
    subject = subject_of(facts)
    context = await personvern.context(
        caller, purpose, data.participant_id, facts.relationships, subject, grants
    )
    if gate_reason(personvern.policy, context) is not None:
        await personvern.record(context, data.participant_id, [])  # who tried, as for reads
        raise ParticipantNotFound()
    recipient = route.recipient
    if recipient is None:
        if _any_basis(personvern, context):
            raise NoRecipient(data.to.role)
        raise NoBasisForMessages(purpose)
    await _deliver(
        personvern,
        caller,
        _receiver(recipient),
        data.participant_id,
        purpose,
        subject,
        grants,
        ("subject", "body"),
    )
    opened = ThreadOpen(
        participant_id=data.participant_id,
        purpose=purpose,
        subject=data.subject,
        body=data.body,
        recipient=recipient,
        initiator_role=_initiator_role(personvern, caller, purpose),
        protection=facts.adressebeskyttelse,
    )
    thread, status = await messaging.fetch(
        ThreadRead, "POST", "/api/v1/threads", caller, content=opened.model_dump_json().encode()
    )
    return json_response(_thread_view(personvern, caller, thread, people=False), status)


@router.get("", response_model=ThreadViewList)
async def list_threads(
    caller: Messenger,
    personvern: PersonvernDep,
    messaging: MessagingDep,
    participant_id: uuid.UUID | None = None,
    unread: bool = False,
    waiting_on_me: bool = False,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """Your inbox: the threads you opened and those addressed to a role you hold (or your
    unit's inbox, as its contact person or opplæringskoordinator), latest activity first.
    Filter by participant, unread, or waiting on you."""
    params = {
        "unread": str(unread).lower(),
        "waiting_on_me": str(waiting_on_me).lower(),
        **({"participant_id": str(participant_id)} if participant_id else {}),
        **page_params(limit, cursor),
    }
    found, _ = await messaging.fetch(ThreadList, "GET", "/api/v1/threads", caller, params=params)
    return json_response(
        ThreadViewList(
            items=[_thread_view(personvern, caller, t, people=False) for t in found.items],
            next_cursor=found.next_cursor,
        )
    )


@router.get("/{thread_id}", response_model=ThreadView, responses=problem_responses(404))
async def read_thread(
    thread_id: uuid.UUID,
    caller: Messenger,
    personvern: PersonvernDep,
    participants: ParticipantsDep,
    messaging: MessagingDep,
) -> Response:
    """One of your threads, with its handovers."""
    thread, _ = await messaging.fetch(ThreadRead, "GET", f"/api/v1/threads/{thread_id}", caller)
    shown = await _shown(personvern, participants, caller, thread)
    return json_response(
        _thread_view(personvern, caller, thread, people=shown.people, protection=shown.protection)
    )


@router.post(
    "/{thread_id}/messages",
    status_code=201,
    response_model=MessageView,
    responses=problem_responses(404, 409),
)
async def post_message(
    thread_id: uuid.UUID,
    data: MessageCreate,
    caller: Messenger,
    personvern: PersonvernDep,
    participants: ParticipantsDep,
    messaging: MessagingDep,
    birth_dates: BirthDatesDep,
) -> Response:
    """Reply in one of your threads. The basis is checked again: after the participant
    withdrew their consent no new message crosses."""
    thread, _ = await messaging.fetch(
        ThreadRead,
        "GET",
        f"/api/v1/threads/{thread_id}",
        caller,
        params={"current": "false"},
    )
    birth_date, grants = await personvern.alongside_grants(
        thread.participant_id, birth_dates.of(participants, caller, thread.participant_id)
    )
    other = thread.recipient if thread.me == "initiator" else thread.initiator
    await _deliver(
        personvern,
        caller,
        _receiver(other),
        thread.participant_id,
        thread.purpose,
        Subject(birth_date=birth_date),
        grants,
        ("body",),
    )
    post = MessagePost(body=data.body)
    sent, status = await messaging.fetch(
        MessageRead,
        "POST",
        f"/api/v1/threads/{thread_id}/messages",
        caller,
        content=post.model_dump_json().encode(),
    )
    return json_response(_message_view(caller, sent.side, sent, people=False), status)


@router.get(
    "/{thread_id}/messages", response_model=MessageViewList, responses=problem_responses(404)
)
async def list_messages(
    thread_id: uuid.UUID,
    caller: Messenger,
    personvern: PersonvernDep,
    participants: ParticipantsDep,
    messaging: MessagingDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """The thread's messages, oldest first; `read_by_other_side` is the read receipt."""
    thread, _ = await messaging.fetch(ThreadRead, "GET", f"/api/v1/threads/{thread_id}", caller)
    params = page_params(limit, cursor)
    found, _ = await messaging.fetch(
        MessageList, "GET", f"/api/v1/threads/{thread_id}/messages", caller, params=params
    )
    people = (await _shown(personvern, participants, caller, thread)).people
    return json_response(
        MessageViewList(
            items=[_message_view(caller, thread.me, m, people=people) for m in found.items],
            next_cursor=found.next_cursor,
        )
    )


@router.post("/{thread_id}/read", response_model=ThreadView, responses=problem_responses(404))
async def mark_read(
    thread_id: uuid.UUID, caller: Messenger, personvern: PersonvernDep, messaging: MessagingDep
) -> Response:
    """Mark the thread read: the other side sees its messages as read."""
    thread, _ = await messaging.fetch(
        ThreadRead, "POST", f"/api/v1/threads/{thread_id}/read", caller
    )
    return json_response(_thread_view(personvern, caller, thread, people=False))


@router.post("/{thread_id}/close", response_model=ThreadView, responses=problem_responses(404))
async def close_thread(
    thread_id: uuid.UUID, caller: Messenger, personvern: PersonvernDep, messaging: MessagingDep
) -> Response:
    """Close the thread for both sides: it takes no new messages, and stays readable."""
    thread, _ = await messaging.fetch(
        ThreadRead, "POST", f"/api/v1/threads/{thread_id}/close", caller
    )
    return json_response(_thread_view(personvern, caller, thread, people=False))


# --- projection ----------------------------------------------------------------------------


class Shown(NamedTuple):
    """What a detail view shows of the other organisation's side."""

    people: bool  # who holds the role, by the policy's decision
    protection: str | None  # the participant's adressebeskyttelse now


async def _shown(
    personvern: Personvern,
    participants: ParticipantClient,
    caller: CallerContext,
    thread: ThreadRead,
) -> Shown:
    """Whether the caller may see who, at the other organisation, holds the other side:
    the policy's decision on that organisation's `assignment.staff_id` for the thread's
    purpose (your own organisation's people are always shown); and the participant's
    protection as it is now, which decides the unit handle shown."""
    other = thread.recipient if thread.me == "initiator" else thread.initiator
    if other.orgnr == caller.orgnr:
        return Shown(True, thread.protection)
    try:
        answer, grants = await personvern.alongside_grants(
            thread.participant_id, participants.read(caller, thread.participant_id)
        )
    except UpstreamProblem as problem:
        if problem.status == 404:
            return Shown(False, thread.protection)
        raise
    subject = subject_of(answer.participant)
    context = await personvern.context(
        caller, thread.purpose, thread.participant_id, answer.relationships, subject, grants
    )
    fields = {"staff_id": Owner(other.orgnr, other.agency_type)}
    decision = decide(personvern.policy, DecisionRequest(context, "assignment", fields))
    released = decision.fields[0].release and decision.fields[0].replace is None
    return Shown(released, subject.adressebeskyttelse)


def _party_view(
    personvern: Personvern,
    caller: CallerContext,
    party: Party,
    people: bool,
    protection: str | None,
) -> PartyView:
    own = party.orgnr == caller.orgnr
    policy = personvern.policy
    handle = party.inbox_handle
    if not own and protection in policy.unit_levels and party.agency_type in policy.unit_owners:
        handle = party.routing_handle
    shown = own or people
    return PartyView(
        orgnr=party.orgnr,
        agency_type=party.agency_type,
        role=party.role,
        unit_handle=handle,
        staff_id=party.staff_id if shown else None,
        staff_name=party.staff_name if shown else None,
    )


def _thread_view(
    personvern: Personvern,
    caller: CallerContext,
    thread: ThreadRead,
    *,
    people: bool,
    protection: str | None = None,
) -> ThreadView:
    """The thread as the caller may see it; `protection` as the detail view read it now
    (lists use the one the thread last saw)."""
    protection = protection if protection is not None else thread.protection
    # Handovers are the recipient side's: shown like its people.
    handed_shown = people or thread.recipient.orgnr == caller.orgnr
    return ThreadView(
        id=thread.id,
        participant_id=thread.participant_id,
        purpose=thread.purpose,
        subject=thread.subject,
        me=thread.me,
        initiator=_party_view(personvern, caller, thread.initiator, people, protection),
        recipient=_party_view(personvern, caller, thread.recipient, people, protection),
        created_at=thread.created_at,
        last_message_at=thread.last_message_at,
        message_count=thread.message_count,
        unread=thread.unread,
        waiting_on=thread.waiting_on,
        waiting_on_me=thread.waiting_on == thread.me,
        overdue=thread.overdue,
        closed_at=thread.closed_at,
        handovers=[
            HandoverView(
                at=h.at,
                from_staff_id=h.from_staff_id if handed_shown else None,
                to_staff_id=h.to_staff_id if handed_shown else None,
            )
            for h in thread.handovers
        ],
    )


def _message_view(
    caller: CallerContext, my_side: Side, message: MessageRead, *, people: bool
) -> MessageView:
    shown = people or message.sender_orgnr == caller.orgnr
    return MessageView(
        id=message.id,
        thread_id=message.thread_id,
        side=message.side,
        mine=message.side == my_side,
        sender_orgnr=message.sender_orgnr,
        sender_staff_id=message.sender_staff_id if shown else None,
        body=message.body,
        sent_at=message.sent_at,
        read_by_other_side=message.read_by_other_side,
    )
