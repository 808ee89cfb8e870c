"""JetStream as the relays and the gateway's consumer use it, when NATS misbehaves: a
publish whose acknowledgement never comes (a server that stalled and was restarted) fails
the round in bounded time, and a component starts while NATS is away."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
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


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
async def test_a_service_started_without_nats_serves_and_says_so_on_metrics(
    database_url: Any, keys_dir: Any, nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator sees a missing (or misnamed) NATS on /metrics while the API serves; and
    the same gauge is 1 where NATS answers."""
    from prometheus_client.parser import text_string_to_metric_families

    from services.participant.app import create_app
    from services.participant.settings import ParticipantSettings

    monkeypatch.setattr(shared.jetstream, "CONNECT_WAIT_SECONDS", 0.2)

    async def connected_gauge(url: str) -> tuple[int, float]:
        settings = ParticipantSettings(
            database_url=database_url("participant"), keys_dir=keys_dir, nats_url=url
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
                health = await client.get("/healthz")
                scraped = (await client.get("/metrics")).text
        [gauge] = [
            sample.value
            for family in text_string_to_metric_families(scraped)
            for sample in family.samples
            if sample.name == "broen_nats_connected"
            and sample.labels == {"component": "participant"}
        ]
        return health.status_code, gauge

    assert await connected_gauge(f"nats://127.0.0.1:{unused_port()}") == (200, 0)
    assert await connected_gauge(nats_url) == (200, 1)
