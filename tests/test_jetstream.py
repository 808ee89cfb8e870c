"""JetStream as the relays and the gateway's consumer use it, when NATS misbehaves: a
publish whose acknowledgement never comes (a server that stalled and was restarted) fails
the round in bounded time, and a component starts while NATS is away."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest

import shared.jetstream
from shared.jetstream import JetStream, NotConnected

pytestmark = pytest.mark.anyio


class Unanswered:
    """A JetStream context whose publishes are written and never acknowledged."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Any]] = []

    async def publish_async(self, subject: str, payload: bytes, **options: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


async def test_a_publish_never_acknowledged_fails_in_bounded_time_and_frees_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shared.jetstream, "ACK_TIMEOUT_SECONDS", 0.05)
    unanswered = Unanswered()
    jetstream = JetStream("nats://127.0.0.1:4222", "BROEN")

    async def connected(wait_seconds: float | None = None) -> Unanswered:
        return unanswered

    monkeypatch.setattr(jetstream, "context", connected)
    envelopes = [{"id": f"event-{n}", "type": "no.broen.assignment.started"} for n in range(3)]

    publishing = asyncio.create_task(jetstream.publish(envelopes))
    done, _ = await asyncio.wait({publishing}, timeout=5)

    assert publishing in done, "still waiting for acknowledgements that never come"
    assert isinstance(publishing.exception(), TimeoutError)
    assert len(unanswered.futures) == 3
    # Given up: each pending publish's slot in the client is released.
    assert all(future.cancelled() for future in unanswered.futures)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_without_nats_a_component_starts_and_its_rounds_fail_until_it_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shared.jetstream, "ACK_TIMEOUT_SECONDS", 0.1)
    started = time.monotonic()
    jetstream = await JetStream.connect(
        f"nats://127.0.0.1:{unused_port()}", "BROEN", wait_seconds=0.2
    )
    try:
        assert time.monotonic() - started < 5
        with pytest.raises(NotConnected):
            await jetstream.context(wait_seconds=0.1)
        with pytest.raises(NotConnected):
            await jetstream.publish([{"id": "event", "type": "no.broen.assignment.started"}])
    finally:
        await asyncio.wait_for(jetstream.aclose(), timeout=5)
