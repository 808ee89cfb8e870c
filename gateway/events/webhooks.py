"""Webhook delivery: each event of a subscription's types becomes a pending delivery; a
delivery is projected under the policy in force when it is attempted (withheld if the
subscriber may no longer see it), audited, signed per Standard Webhooks and sent.

- 2xx: delivered. 410: the subscription is disabled and nothing more is sent to it.
- Anything else (another status, a timeout, a refused address): tried again after an
  exponential backoff with jitter, until the retry window since it was due has passed;
  then it is dead-lettered (listed, and re-sent by a replay).

A delivery is claimed for the time a send can take before it is sent, so a gateway that
dies mid-send leaves it to be sent again (at least once; the `webhook-id` is the event's
id, the same on every attempt, for the receiver to deduplicate)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from gateway.events import store
from gateway.events.projection import Projector, Reader, Visible
from gateway.models import EventRecord, Subscription, WebhookDelivery
from shared.background import Progress, Repeating
from shared.crypto import Keyring, WrappedKey
from shared.internal_auth import CallerContext
from shared.metrics import WEBHOOK_DELIVERIES

SECRET_BYTES = 32
FAN_OUT_BATCH = 1000
SEND_BATCH = 200
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"


def new_secret() -> tuple[str, bytes]:
    """A signing secret as the subscriber gets it (`whsec_` + base64) and its raw bytes."""
    raw = secrets.token_bytes(SECRET_BYTES)
    return "whsec_" + base64.b64encode(raw).decode(), raw


def secret_owner(subscription_id: uuid.UUID) -> str:
    return f"subscription/{subscription_id}"


def signed_headers(secret: bytes, message_id: str, body: str, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, at, body),
        "content-type": CONTENT_TYPE,
    }


def reader_of(subscription: Subscription) -> Reader:
    """A subscription acts as its organisation's system, for its purpose."""
    caller = CallerContext(
        kind="system",
        client_id=subscription.client_id,
        orgnr=subscription.orgnr,
        agency_type=subscription.agency_type,
        scopes=("subscriptions",),
    )
    return Reader(caller, subscription.purpose)


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float
    max_seconds: float
    window_seconds: float
    lease_seconds: float

    def next_attempt(self, attempts: int, due_since: datetime, now: datetime) -> datetime | None:
        """When to try again after `attempts` failed attempts, or None: dead-lettered."""
        backoff = min(self.base_seconds * 2 ** max(attempts - 1, 0), self.max_seconds)
        at = now + timedelta(seconds=backoff * random.uniform(0.5, 1.0))  # noqa: S311
        if at > due_since + timedelta(seconds=self.window_seconds):
            return None
        return at


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: int
    status: str  # delivered, withheld, failed, gone
    result: str | None


class WebhookDispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        projector: Projector,
        keyring: Keyring,
        client: httpx.AsyncClient,
        retry: RetryPolicy,
        *,
        concurrency: int,
        interval_seconds: float,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.projector = projector
        self.keyring = keyring
        self.client = client
        self.retry = retry
        self._slots = asyncio.Semaphore(concurrency)
        # The head of the log when every subscription had considered all of it.
        self._considered_to = -1
        self._loop = Repeating("webhook delivery", self.step, interval_seconds=interval_seconds)

    def start(self) -> None:
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.aclose()
        await self.client.aclose()

    async def step(self) -> Progress:
        """Fan out new events, then send what is due."""
        considered = await self.fan_out()
        sent = await self.send_due()
        if considered >= FAN_OUT_BATCH or sent >= SEND_BATCH:
            return Progress.MORE
        return Progress.SOME if considered or sent else Progress.NONE

    async def fan_out(self) -> int:
        async with self.sessionmaker() as session:
            head = await store.last_seq(session)
            if head == self._considered_to:
                return 0  # nothing new (a new subscription starts at the head)
            subscriptions = await store.active_subscriptions(session)
        most = 0
        for subscription in subscriptions:
            async with self.sessionmaker() as session:
                considered = await store.fan_out(
                    session, subscription, limit=FAN_OUT_BATCH, now=datetime.now(UTC)
                )
                await session.commit()
            most = max(most, considered)
        if most < FAN_OUT_BATCH:
            self._considered_to = head
        return most

    async def send_due(self) -> int:
        claimed = await self._claim()
        if not claimed:
            return 0
        deliveries, subscriptions, events = claimed
        by_subscription: dict[uuid.UUID, list[WebhookDelivery]] = defaultdict(list)
        for delivery in deliveries:
            by_subscription[delivery.subscription_id].append(delivery)
        outcomes = await asyncio.gather(
            *(
                self._send_for(subscriptions[sid], group, events)
                for sid, group in by_subscription.items()
            )
        )
        await self._finish([o for group in outcomes for o in group], deliveries)
        return len(deliveries)

    async def _claim(
        self,
    ) -> tuple[list[WebhookDelivery], dict[uuid.UUID, Subscription], dict[int, EventRecord]] | None:
        now = datetime.now(UTC)
        async with self.sessionmaker() as session:
            deliveries = await store.due_deliveries(session, now=now, limit=SEND_BATCH)
            if not deliveries:
                return None
            lease = now + timedelta(seconds=self.retry.lease_seconds)
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_([d.id for d in deliveries]))
                .values(next_attempt_at=lease)
            )
            subscriptions = await store.subscriptions_by_id(
                session, list({d.subscription_id for d in deliveries})
            )
            events = await store.events_by_seq(session, [d.event_seq for d in deliveries])
            await session.commit()
        return deliveries, subscriptions, events

    async def _send_for(
        self,
        subscription: Subscription,
        deliveries: Sequence[WebhookDelivery],
        events: dict[int, EventRecord],
    ) -> list[Outcome]:
        records = [events[d.event_seq] for d in deliveries if d.event_seq in events]
        try:
            visible = {
                v.record.seq: v
                for v in await self.projector.project(reader_of(subscription), records)
            }
        except Exception as error:  # the facts or the policy inputs are unavailable
            return [Outcome(d.id, "failed", _result_of(error)) for d in deliveries]
        secret = self.keyring.unwrap(
            WrappedKey(subscription.secret_kid, subscription.secret_wrapped),
            secret_owner(subscription.id),
        )
        withheld = [
            Outcome(d.id, "withheld", None) for d in deliveries if d.event_seq not in visible
        ]
        try:
            # Logged before anything leaves, all in one group commit.
            await self.projector.record_audit(list(visible.values()))
        except Exception as error:
            return [
                *withheld,
                *(
                    Outcome(d.id, "failed", _result_of(error))
                    for d in deliveries
                    if d.event_seq in visible
                ),
            ]
        # Concurrently, at most `concurrency` at a time: receivers deduplicate by id and
        # order by `sequence`, so nothing waits for the delivery before it.
        sent = await asyncio.gather(
            *(
                self._send(subscription, d, visible[d.event_seq], secret)
                for d in deliveries
                if d.event_seq in visible
            )
        )
        return [*withheld, *sent]

    async def _send(
        self, subscription: Subscription, delivery: WebhookDelivery, shown: Visible, secret: bytes
    ) -> Outcome:
        async with self._slots:
            try:
                body = json.dumps(shown.envelope, separators=(",", ":"), ensure_ascii=False)
                headers = signed_headers(secret, shown.record.event_id, body, datetime.now(UTC))
                response = await self.client.post(
                    subscription.url, content=body.encode(), headers=headers
                )
            except Exception as error:
                return Outcome(delivery.id, "failed", _result_of(error))
        if 200 <= response.status_code < 300:
            return Outcome(delivery.id, "delivered", f"HTTP {response.status_code}")
        if response.status_code == 410:
            return Outcome(delivery.id, "gone", "HTTP 410")
        return Outcome(delivery.id, "failed", f"HTTP {response.status_code}")

    async def _finish(
        self, outcomes: Sequence[Outcome], deliveries: Sequence[WebhookDelivery]
    ) -> None:
        now = datetime.now(UTC)
        by_id = {d.id: d for d in deliveries}
        # Delivered and withheld ones finish together, per result; the rest one by one,
        # after them (a 410 cancels what is still pending of its subscription).
        finished: dict[tuple[str, str | None], list[int]] = defaultdict(list)
        for outcome in outcomes:
            if outcome.status in ("delivered", "withheld"):
                finished[(outcome.status, outcome.result)].append(outcome.delivery_id)
        async with self.sessionmaker() as session:
            for (status, result), ids in finished.items():
                attempted = status == "delivered"
                values: dict[str, object] = {
                    "status": status,
                    "finished_at": now,
                    "last_result": result,
                    "attempts": WebhookDelivery.attempts + int(attempted),
                }
                if attempted:
                    values["last_attempt_at"] = now
                await _update_pending(session, ids, values)
            for outcome in outcomes:
                if outcome.status in ("delivered", "withheld"):
                    continue
                delivery = by_id[outcome.delivery_id]
                attempts = delivery.attempts + 1
                values = {
                    "attempts": attempts,
                    "last_attempt_at": now,
                    "last_result": outcome.result,
                }
                if outcome.status == "gone":
                    values |= {"status": "cancelled", "finished_at": now}
                else:
                    retry_at = self.retry.next_attempt(attempts, delivery.created_at, now)
                    if retry_at is None:
                        values |= {"status": "dead", "finished_at": now}
                        WEBHOOK_DELIVERIES.labels("dead").inc()
                    else:
                        values |= {"next_attempt_at": retry_at}
                await _update_pending(session, [delivery.id], values)
                if outcome.status == "gone":
                    await store.set_status(
                        session,
                        delivery.subscription_id,
                        status="disabled",
                        reason="The receiver answered 410 Gone.",
                        now=now,
                    )
            await session.commit()
        for outcome in outcomes:
            WEBHOOK_DELIVERIES.labels(outcome.status).inc()


async def _update_pending(
    session: AsyncSession, ids: Sequence[int], values: dict[str, object]
) -> None:
    """Only a delivery still pending changes (a deleted subscription cancelled the rest)."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status == "pending")
        .values(**values)
    )


def _result_of(error: Exception) -> str:
    """What went wrong, without a message (it could hold a URL or data)."""
    if isinstance(error, httpx.ConnectError) and "not allowed" in str(error):
        return "address not allowed"
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return "could not connect"
    if isinstance(error, httpx.TimeoutException):
        return "timeout"
    return type(error).__name__
