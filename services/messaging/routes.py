"""Routes of the messaging service, behind the gateway (which checks the scope, the
sender's relationship, and the basis for the `messages` category before it calls)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from services.messaging import service
from services.messaging.clients import Assignments
from services.messaging.schemas import (
    MessageList,
    MessagePost,
    ThreadList,
    ThreadOpen,
)
from shared.app import KeyringDep, json_response
from shared.db import SessionDep
from shared.internal_auth import CallerDep, require_internal_caller
from shared.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    encode_cursor,
    moment_after,
    next_cursor,
)
from shared.problems import problem_responses

router = APIRouter(
    prefix="/api/v1/threads",
    dependencies=[Depends(require_internal_caller)],
    responses=problem_responses(401, 403, 404, 409, 422),
)


async def get_assignments(request: Request) -> Assignments:
    assignments: Assignments = request.app.state.assignments
    return assignments


AssignmentsDep = Annotated[Assignments, Depends(get_assignments)]


@router.post("")
async def open_thread(
    data: ThreadOpen, session: SessionDep, keyring: KeyringDep, caller: CallerDep
) -> Response:
    """Open a thread with its first message, to the recipient the gateway resolved."""
    return json_response(await service.open_thread(session, keyring, caller, data), 201)


@router.get("")
async def list_threads(
    session: SessionDep,
    keyring: KeyringDep,
    assignments: AssignmentsDep,
    caller: CallerDep,
    participant_id: uuid.UUID | None = None,
    unread: bool = False,
    waiting_on_me: bool = False,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """The caller's inbox, latest activity first."""
    items = await service.inbox(
        session,
        keyring,
        assignments,
        caller,
        participant_id=participant_id,
        unread=unread,
        waiting_on_me=waiting_on_me,
        after=moment_after(cursor),
        limit=limit,
    )
    last = items[-1] if len(items) == limit else None
    return json_response(
        ThreadList(
            items=items,
            next_cursor=(
                encode_cursor(last.last_message_at.isoformat(), str(last.id)) if last else None
            ),
        )
    )


@router.get("/{thread_id}")
async def read_thread(
    thread_id: uuid.UUID,
    session: SessionDep,
    keyring: KeyringDep,
    assignments: AssignmentsDep,
    caller: CallerDep,
    current: bool = True,
) -> Response:
    """One thread the caller is a side of, with who holds its recipient role now and its
    handovers; `current=false` skips both (the gateway's check before a reply)."""
    thread = await service.read_thread(
        session, keyring, assignments, caller, thread_id, current=current
    )
    return json_response(thread)


@router.post("/{thread_id}/messages")
async def post_message(
    thread_id: uuid.UUID,
    data: MessagePost,
    session: SessionDep,
    keyring: KeyringDep,
    assignments: AssignmentsDep,
    caller: CallerDep,
) -> Response:
    """Reply in a thread."""
    sent = await service.post_message(session, keyring, assignments, caller, thread_id, data)
    return json_response(sent, 201)


@router.get("/{thread_id}/messages")
async def list_messages(
    thread_id: uuid.UUID,
    session: SessionDep,
    keyring: KeyringDep,
    assignments: AssignmentsDep,
    caller: CallerDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """The thread's messages, oldest first, with read receipts."""
    items = await service.read_messages(
        session, keyring, assignments, caller, thread_id, after=moment_after(cursor), limit=limit
    )
    return json_response(MessageList(items=items, next_cursor=next_cursor(items, limit, "sent_at")))


@router.post("/{thread_id}/read")
async def mark_read(
    thread_id: uuid.UUID,
    session: SessionDep,
    keyring: KeyringDep,
    assignments: AssignmentsDep,
    caller: CallerDep,
) -> Response:
    """Mark every message the other side sent so far as read."""
    return json_response(await service.mark_read(session, keyring, assignments, caller, thread_id))


@router.post("/{thread_id}/close")
async def close_thread(
    thread_id: uuid.UUID,
    session: SessionDep,
    keyring: KeyringDep,
    assignments: AssignmentsDep,
    caller: CallerDep,
) -> Response:
    """Close the thread: it takes no new messages; what it holds stays readable."""
    return json_response(await service.close(session, keyring, assignments, caller, thread_id))
