"""The changes feed and webhook subscriptions: for an organisation's systems (a system
token with the `subscriptions` scope), always projected by the personvern policy for the
purpose declared (the feed's Broen-Purpose header, the subscription's purpose)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from gateway.deps import require_scope
from gateway.events import store
from gateway.events.projection import Projector, Reader, Visible
from gateway.events.schemas import (
    CloudEventOut,
    DeliveryList,
    DeliveryRead,
    EventFeed,
    EventType,
    ReplayAnswer,
    ReplayRequest,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionRead,
)
from gateway.events.targets import TargetRules
from gateway.events.webhooks import new_secret, secret_owner
from gateway.models import Subscription
from gateway.personvern import PersonvernDep, PurposeDep
from gateway.policy import require_purpose
from shared.app import KeyringDep, json_response
from shared.db import SessionDep
from shared.internal_auth import CallerContext
from shared.pagination import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    decode_cursor,
    encode_cursor,
    moment_after,
    next_cursor,
)
from shared.problems import Forbidden, NotFound, problem_responses

router = APIRouter(prefix="/api/v1", tags=["events"])

# How far one feed request reads past events the caller may not see before it answers
# with what it found (and a cursor after what it read).
FEED_SCAN_MAX = 5000


class SystemClientsOnly(Forbidden):
    type = "system-clients-only"
    title = "For an organisation's systems only"


class SubscriptionInactive(Forbidden):
    status = 409
    type = "subscription-inactive"
    title = "The subscription is disabled"

    def __init__(self) -> None:
        super().__init__("A disabled subscription sends nothing; subscribe again.")


class SubscriptionNotFound(NotFound):
    type = "subscription-not-found"
    title = "No such subscription"


async def _subscriber(
    caller: Annotated[CallerContext, Depends(require_scope("subscriptions"))],
) -> CallerContext:
    if caller.kind != "system":
        raise SystemClientsOnly(
            "The changes feed and webhooks serve an organisation's systems: use a system "
            "token (client_credentials)."
        )
    return caller


Subscriber = Annotated[CallerContext, Depends(_subscriber)]


def _projector(request: Request) -> Projector:
    projector: Projector = request.app.state.projector
    return projector


ProjectorDep = Annotated[Projector, Depends(_projector)]


@router.get(
    "/events", response_model=EventFeed, responses=problem_responses(400, 401, 403, 422, 503)
)
async def read_changes(
    caller: Subscriber,
    purpose: PurposeDep,
    session: SessionDep,
    projector: ProjectorDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    types: Annotated[list[EventType] | None, Query(description="Only these event types.")] = None,
) -> Response:
    """The changes feed: events about the participants you may see, as you may see them.

    Start without a cursor (from the oldest event kept) and poll with `next_cursor`, which
    is never null: at the end it is where the next poll continues. Events are delivered at
    least once; deduplicate by `id`.
    """
    reader = Reader(caller, purpose)
    position = int(decode_cursor(cursor, 1)[0]) if cursor else 0
    items: list[Visible] = []
    scanned = 0
    while len(items) < limit and scanned < FEED_SCAN_MAX:
        rows = await store.events_after(session, position, limit=limit, types=types)
        if not rows:
            break
        shown = {v.record.seq: v for v in await projector.project(reader, rows)}
        for row in rows:
            position = row.seq
            scanned += 1
            if row.seq in shown:
                items.append(shown[row.seq])
                if len(items) == limit:
                    break
    await projector.record_audit(items)
    page = EventFeed(
        items=[CloudEventOut.model_validate(v.envelope) for v in items],
        next_cursor=encode_cursor(position),
    )
    return json_response(page)


# --- subscriptions ---------------------------------------------------------------------------


def _read(subscription: Subscription) -> SubscriptionRead:
    return SubscriptionRead.model_validate(subscription, from_attributes=True)


async def valid_subscription(
    subscription_id: uuid.UUID, caller: Subscriber, session: SessionDep
) -> Subscription:
    """The caller's organisation's subscription; any other is unknown."""
    found = await store.get_subscription(session, subscription_id, orgnr=caller.orgnr)
    if found is None:
        raise SubscriptionNotFound()
    return found


SubscriptionDep = Annotated[Subscription, Depends(valid_subscription)]


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=SubscriptionCreated,
    responses=problem_responses(400, 401, 403, 422),
)
async def create_subscription(
    data: SubscriptionCreate,
    caller: Subscriber,
    session: SessionDep,
    keyring: KeyringDep,
    personvern: PersonvernDep,
    request: Request,
) -> Response:
    """Subscribe a URL to event types, for a purpose; the signing secret is shown only now.

    Deliveries start with events after this moment. Each is signed per Standard Webhooks
    (`webhook-id`, `webhook-timestamp`, `webhook-signature`), retried with backoff for up
    to 24 hours, then dead-lettered; a 410 answer disables the subscription.
    """
    require_purpose(personvern.policy, caller, data.purpose)
    rules: TargetRules = request.app.state.webhook_rules
    rules.check_url(data.url)
    assert caller.orgnr and caller.client_id
    secret, raw = new_secret()
    subscription_id = uuid.uuid4()
    wrapped = keyring.wrap(raw, secret_owner(subscription_id))
    now = datetime.now(UTC)
    subscription = Subscription(
        id=subscription_id,
        orgnr=caller.orgnr,
        agency_type=caller.agency_type or "",
        client_id=caller.client_id,
        url=data.url,
        event_types=list(dict.fromkeys(data.event_types)),
        purpose=data.purpose,
        secret_kid=wrapped.kid,
        secret_wrapped=wrapped.wrapped,
        status="active",
        disabled_reason=None,
        cursor=await store.last_seq(session),
        created_at=now,
        changed_at=now,
    )
    await store.add_subscription(session, subscription)
    created = SubscriptionCreated(**_read(subscription).model_dump(), secret=secret)
    return json_response(created, status_code=201)


@router.get(
    "/subscriptions",
    response_model=SubscriptionList,
    responses=problem_responses(400, 401, 403, 422),
)
async def list_subscriptions(
    caller: Subscriber, session: SessionDep, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Response:
    """Your organisation's subscriptions (active and disabled)."""
    assert caller.orgnr
    found = await store.list_subscriptions(
        session, orgnr=caller.orgnr, after=moment_after(cursor), limit=limit
    )
    page = SubscriptionList(
        items=[_read(s) for s in found], next_cursor=next_cursor(found, limit, "created_at")
    )
    return json_response(page)


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=SubscriptionRead,
    responses=problem_responses(400, 401, 403, 404, 422),
)
async def read_subscription(subscription: SubscriptionDep) -> Response:
    """One of your organisation's subscriptions."""
    return json_response(_read(subscription))


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=204,
    responses=problem_responses(400, 401, 403, 404, 422),
)
async def delete_subscription(subscription: SubscriptionDep, session: SessionDep) -> Response:
    """Delete the subscription: nothing more is sent, pending deliveries included."""
    await store.set_status(
        session, subscription.id, status="deleted", reason=None, now=datetime.now(UTC)
    )
    return Response(status_code=204)


@router.post(
    "/subscriptions/{subscription_id}/replay",
    response_model=ReplayAnswer,
    status_code=202,
    responses=problem_responses(400, 401, 403, 404, 409, 422),
)
async def replay(
    data: ReplayRequest, subscription: SubscriptionDep, session: SessionDep
) -> Response:
    """Send the subscription's events in a range of `sequence` again (dead-lettered ones
    included), each projected by the policy in force when it is sent."""
    if subscription.status != "active":
        raise SubscriptionInactive()
    scheduled = await store.schedule_replay(
        session,
        subscription,
        from_seq=data.from_sequence,
        to_seq=data.to_sequence or subscription.cursor,
        now=datetime.now(UTC),
    )
    return json_response(ReplayAnswer(scheduled=scheduled), status_code=202)


@router.get(
    "/subscriptions/{subscription_id}/deliveries",
    response_model=DeliveryList,
    responses=problem_responses(400, 401, 403, 404, 422),
)
async def list_deliveries(
    subscription: SubscriptionDep,
    session: SessionDep,
    status: Annotated[
        str | None,
        Query(pattern="^(pending|delivered|withheld|dead|cancelled)$"),
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """The subscription's deliveries, oldest first, e.g. `?status=dead` for the dead letters."""
    after = int(decode_cursor(cursor, 1)[0]) if cursor else None
    rows = await store.list_deliveries(
        session, subscription.id, status=status, after=after, limit=limit
    )
    items = [
        DeliveryRead(
            id=delivery.id,
            event_id=event_id,
            event_type=event_type,
            status=delivery.status,
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
            last_attempt_at=delivery.last_attempt_at,
            last_result=delivery.last_result,
            created_at=delivery.created_at,
        )
        for delivery, event_id, event_type in rows
    ]
    following = encode_cursor(items[-1].id) if len(items) == limit else None
    return json_response(DeliveryList(items=items, next_cursor=following))
