"""Taking the services' domain events into the gateway's event log, in one of two ways:

- `OutboxPuller` (the embedded default): asks each service for its pending outbox events,
  appends them, and only then tells the service they are taken.
- `StreamConsumer` (with `BROEN_NATS_URL`): a durable JetStream consumer; a message is
  acknowledged after the log holds it.

Either way an event taken twice (a crash between the append and the confirmation) is
stored once: the log is unique by event id."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.clients import GATEWAY_ITSELF
from gateway.events import store
from shared.background import Progress, Repeating, progress
from shared.clients import Upstream
from shared.jetstream import JetStream, subject_prefix
from shared.metrics import EVENT_LAG_SECONDS, EVENTS_INGESTED
from shared.outbox import OUTBOX_BATCH, PendingEvents, PublishedEvents
from shared.problems import ServiceUnavailable

DURABLE = "broen-gateway"

log = logging.getLogger("broen.events")


class EventIngest:
    """The one background task that feeds the log; `start` and `aclose` in the lifespan."""

    def __init__(
        self, name: str, step: Callable[[], Awaitable[Progress]], interval_seconds: float
    ) -> None:
        self._loop = Repeating(name, step, interval_seconds=interval_seconds)

    def start(self) -> None:
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.aclose()


async def _append(
    sessionmaker: async_sessionmaker[AsyncSession],
    envelopes: Sequence[dict[str, Any]],
    transport: str,
) -> None:
    now = datetime.now(UTC)
    async with sessionmaker() as session:
        await store.append(session, envelopes, now=now)
        await session.commit()
    EVENTS_INGESTED.labels(transport).inc(len(envelopes))
    for envelope in envelopes:
        written = _time_of(envelope)
        if written is not None:
            EVENT_LAG_SECONDS.observe(max((now - written).total_seconds(), 0.0))


def _time_of(envelope: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(envelope["time"])
    except (KeyError, TypeError, ValueError):
        return None


class OutboxPuller(EventIngest):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        sources: Sequence[Upstream],
        *,
        interval_seconds: float,
    ) -> None:
        super().__init__("event ingest (outboxes)", self._step, interval_seconds)
        self.sessionmaker = sessionmaker
        self.sources = sources

    async def _step(self) -> Progress:
        return progress(await self.pull_once(), OUTBOX_BATCH)

    async def pull_once(self) -> int:
        """One batch from each service; the number of events taken. A service that does
        not answer is skipped (and logged) so the others' events keep coming; if none
        answered, the round fails."""
        taken = 0
        unavailable: list[ServiceUnavailable] = []
        for source in self.sources:
            try:
                taken += await self._pull(source)
            except ServiceUnavailable as error:
                log.warning(
                    "event ingest from %s failed",
                    source.name,
                    extra={"error_type": type(error).__name__},
                )
                unavailable.append(error)
        if len(unavailable) == len(self.sources):
            raise unavailable[0]
        return taken

    async def _pull(self, source: Upstream) -> int:
        answer, _ = await source.fetch(
            PendingEvents,
            "GET",
            "/internal/v1/outbox",
            GATEWAY_ITSELF,
            params={"limit": str(OUTBOX_BATCH)},
        )
        if not answer.items:
            return 0
        await _append(self.sessionmaker, answer.items, "outbox")
        confirmed = PublishedEvents(ids=[envelope["id"] for envelope in answer.items])
        await source.call(
            "POST",
            "/internal/v1/outbox/published",
            GATEWAY_ITSELF,
            content=confirmed.model_dump_json().encode(),
        )
        return len(answer.items)


class StreamConsumer(EventIngest):
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        jetstream: JetStream,
        *,
        interval_seconds: float,
    ) -> None:
        super().__init__("event ingest (JetStream)", self.consume_once, interval_seconds)
        self.sessionmaker = sessionmaker
        self.jetstream = jetstream
        self._subscription: JetStreamContext.PullSubscription | None = None

    async def consume_once(self) -> Progress:
        if self._subscription is None:
            js = await self.jetstream.context()
            self._subscription = await js.pull_subscribe(
                f"{subject_prefix(self.jetstream.stream)}.>",
                durable=DURABLE,
                stream=self.jetstream.stream,
            )
        try:
            messages = await self._subscription.fetch(batch=OUTBOX_BATCH, timeout=1.0)
        except (nats.errors.TimeoutError, TimeoutError):
            return Progress.MORE  # nothing came while fetch waited: ask again at once
        await _append(
            self.sessionmaker, [json.loads(message.data) for message in messages], "jetstream"
        )
        for message in messages:
            await message.ack()
        return Progress.MORE
