"""The embedded default's event ingest (the gateway pulls each service's outbox) with one
service not answering: the other services' events keep coming, and the missing one's
arrive once it is back."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from gateway.models import EventRecord
from services.consent.models import OutboxEvent as ConsentOutbox
from shared.events import make_event
from shared.outbox import record_event
from tests.system.conftest import Stack
from tests.system.test_events import everything_taken_in, until
from tests.system.world import world

pytestmark = pytest.mark.anyio


async def logged_ids(stack: Stack) -> set[str]:
    async with stack.gateway.state.sessionmaker() as session:
        return set((await session.scalars(select(EventRecord.event_id))).all())


async def test_one_service_down_does_not_hold_up_the_others_events(stack: Stack) -> None:
    await world(stack)
    await everything_taken_in(stack)
    participant = stack.gateway.state.participant_client.upstream.http
    answering = participant._transport

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("participant service down", request=request)

    participant._transport = httpx.MockTransport(refuse)
    event = make_event("broen/consent", "consent.recorded", subject=None, data={})
    async with stack.consent.state.sessionmaker.begin() as session:
        await record_event(session, ConsentOutbox, event)

    async def logged() -> bool:
        return event.id in await logged_ids(stack)

    await until(logged, seconds=10)  # with the participant service still down
    participant._transport = answering
    await everything_taken_in(stack)
