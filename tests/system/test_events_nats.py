"""The same event paths with NATS JetStream between the services and the gateway (a real
server): every service's relay publishes its outbox, the gateway consumes the stream."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import func, select
from standardwebhooks import Webhook

import shared.relay
from gateway.models import EventRecord
from gateway.policy import GivenGrants
from services.participant.models import OutboxEvent as ParticipantOutbox
from shared.jetstream import subject_prefix
from tests.system.conftest import Stack
from tests.system.test_events import (
    ASSIGNMENT_STARTED,
    assignments_in,
    everything_taken_in,
    feed,
    reassign_kontaktlaerer,
    subscribe,
    until,
)
from tests.system.webhook_receiver import Receiver
from tests.system.world import world

pytestmark = pytest.mark.anyio


@pytest.fixture
def consents() -> GivenGrants:
    return GivenGrants()


@pytest.fixture
async def stream(nats_url: str) -> AsyncIterator[str]:
    """A stream of this test's own, deleted afterwards."""
    name = f"BROEN_T{uuid.uuid4().hex[:10].upper()}"
    yield name
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    await client.close()


@pytest.fixture
def service_overrides(nats_url: str, stream: str) -> dict[str, Any]:
    return {"nats_url": nats_url, "nats_stream": stream, "events_interval_seconds": 0.05}


@pytest.fixture
def gateway_overrides(nats_url: str, stream: str) -> dict[str, Any]:
    return {
        "nats_url": nats_url,
        "nats_stream": stream,
        "events_interval_seconds": 0.05,
        "webhook_allowed_networks": ["127.0.0.0/8"],
        "webhook_retry_base_seconds": 0.1,
        "webhook_retry_max_seconds": 0.4,
    }


async def stream_ids(nats_url: str, stream: str) -> list[str]:
    """Every event id the stream holds, read by a consumer of the test's own."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        info = await js.stream_info(stream)
        subscription = await js.pull_subscribe(
            f"{subject_prefix(stream)}.>",
            stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        ids: list[str] = []
        while len(ids) < info.state.messages:
            for message in await subscription.fetch(batch=100, timeout=2):
                assert (
                    message.headers
                    and message.headers["Nats-Msg-Id"] == json.loads(message.data)["id"]
                )
                ids.append(json.loads(message.data)["id"])
                await message.ack()
        return ids
    finally:
        await client.close()


async def outbox_ids(stack: Stack) -> list[str]:
    async with stack.participant.state.sessionmaker() as session:
        return list((await session.scalars(select(ParticipantOutbox.event_id))).all())


async def log_ids(stack: Stack) -> list[str]:
    async with stack.gateway.state.sessionmaker() as session:
        return list((await session.scalars(select(EventRecord.event_id))).all())


async def test_events_travel_through_jetstream_to_the_feed_and_to_webhooks(
    stack: Stack, nats_url: str, stream: str
) -> None:
    w = await world(stack)
    await everything_taken_in(stack)
    receiver = await Receiver().start()
    try:
        subscription = await subscribe(stack, w.skole, receiver.url)
        await reassign_kontaktlaerer(stack, w)

        async def arrived() -> bool:
            return len(receiver.received) == 1

        await until(arrived)
    finally:
        await receiver.stop()

    page = await feed(stack, w.skole)
    assert set(assignments_in(page["items"])) == {w.skole.orgnr}
    [delivered] = receiver.received
    event = Webhook(subscription["secret"]).verify(delivered.body, delivered.headers)
    assert event["type"] == ASSIGNMENT_STARTED and event["data"]["orgnr"] == w.skole.orgnr
    # The participant service's events went through the stream, each once, all marked.
    published = await outbox_ids(stack)
    assert sorted(await stream_ids(nats_url, stream)) == sorted(published)
    async with stack.participant.state.sessionmaker() as session:
        unpublished = await session.scalar(
            select(func.count())
            .select_from(ParticipantOutbox)
            .where(ParticipantOutbox.published_at.is_(None))
        )
    assert unpublished == 0


async def test_a_relay_killed_mid_batch_loses_nothing_and_repeats_only_with_the_same_id(
    stack: Stack, nats_url: str, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = stack.participant.state.relay
    await relay.aclose()  # this test runs the relay's rounds itself
    w = await world(stack)

    async def killed(*args: Any, **kwargs: Any) -> None:
        raise ConnectionResetError("killed after publishing, before marking")

    monkeypatch.setattr(shared.relay, "mark_published", killed)
    with pytest.raises(ConnectionResetError):
        await relay.relay_once()  # published, but not marked: as if killed right there
    monkeypatch.undo()
    assert await relay.relay_once() > 0  # after the restart: everything again
    assert await relay.relay_once() == 0
    await everything_taken_in(stack)
    await asyncio.sleep(0.3)

    written = await outbox_ids(stack)
    in_stream = await stream_ids(nats_url, stream)
    in_log = await log_ids(stack)
    assert set(in_stream) == set(written)  # nothing lost
    assert set(written) <= set(in_log) and len(in_log) == len(set(in_log))  # once each
    assert set(assignments_in((await feed(stack, w.skole))["items"])) == {w.skole.orgnr}
