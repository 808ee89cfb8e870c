"""NATS JetStream, as Broen uses it: one stream holds every service's domain events, each
published with its CloudEvents id as `Nats-Msg-Id` (JetStream drops a repeat within its
duplicate window; consumers deduplicate by the id beyond it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck, StreamConfig
from nats.js.errors import NotFoundError

from shared.events import EVENT_TYPE_PREFIX

MSG_ID_HEADER = "Nats-Msg-Id"
DUPLICATE_WINDOW_SECONDS = 600.0
ACK_TIMEOUT_SECONDS = 5.0
CONNECT_WAIT_SECONDS = 2.0
CONNECT_RETRY_SECONDS = 1.0

log = logging.getLogger("broen.jetstream")


def subject_prefix(stream: str) -> str:
    return stream.lower()


def subject_of(stream: str, event_type: str) -> str:
    """`no.broen.assignment.started` in stream BROEN travels as `broen.assignment.started`."""
    return f"{subject_prefix(stream)}.{event_type.removeprefix(EVENT_TYPE_PREFIX)}"


class NotConnected(RuntimeError):
    """NATS has not answered since the component started (its events wait in the outbox)."""


class JetStream:
    """A connection to NATS and the stream, opened with `connect` and closed with `aclose`.

    A component does not need NATS to start: `connect` waits CONNECT_WAIT_SECONDS for it,
    then goes on connecting in the background. A service restarted while NATS is away thus
    serves its API (its events wait in the outbox) instead of answering nothing, not even
    its health check, until NATS is back. Until the connection is made, `context` raises
    NotConnected after waiting for it a while, and the relay's or consumer's round is
    tried again. Once connected, the client reconnects by itself."""

    def __init__(self, url: str, stream: str) -> None:
        self.url = url
        self.stream = stream
        self.client: Client | None = None
        self._js: JetStreamContext | None = None
        self._connecting: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, url: str, stream: str, *, wait_seconds: float = CONNECT_WAIT_SECONDS
    ) -> JetStream:
        jetstream = cls(url, stream)
        jetstream._connecting = asyncio.create_task(jetstream._connect(), name="nats connect")
        done, _ = await asyncio.wait({jetstream._connecting}, timeout=wait_seconds)
        if not done:
            log.warning("NATS is not answering; starting without it and connecting meanwhile")
        return jetstream

    @property
    def connected(self) -> bool:
        """Whether NATS answers now (the client reconnects by itself after a loss)."""
        return self.client is not None and self.client.is_connected

    async def _connect(self) -> None:
        while True:
            client = Client()
            try:
                await client.connect(
                    self.url,
                    name="broen",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,  # type: ignore[arg-type]  # seconds; typed int
                )
                js = client.jetstream()
                await self._ensure_stream(js)
            except asyncio.CancelledError:  # closed while connecting
                with contextlib.suppress(Exception):
                    await client.close()
                raise
            except Exception as error:  # a stream not ready right after a restart, ...
                log.warning("NATS connect failed", extra={"error_type": type(error).__name__})
                with contextlib.suppress(Exception):
                    await client.close()
                await asyncio.sleep(CONNECT_RETRY_SECONDS)
                continue
            self.client, self._js = client, js
            return

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[f"{subject_prefix(self.stream)}.>"],
                    duplicate_window=DUPLICATE_WINDOW_SECONDS,
                )
            )

    async def context(self, wait_seconds: float | None = None) -> JetStreamContext:
        """The JetStream context, once connected; waits for the connection at most
        `wait_seconds` (ACK_TIMEOUT_SECONDS), then raises NotConnected."""
        if self._js is None and self._connecting is not None:
            timeout = ACK_TIMEOUT_SECONDS if wait_seconds is None else wait_seconds
            await asyncio.wait({self._connecting}, timeout=timeout)
        if self._js is None:
            raise NotConnected("NATS has not answered yet")
        return self._js

    async def publish(self, envelopes: Sequence[dict[str, Any]]) -> None:
        """Publish the envelopes and return once JetStream has stored every one (raises if
        any was not acknowledged within ACK_TIMEOUT_SECONDS: the caller then publishes them
        again, and JetStream drops what it already holds by the id).

        The wait is bounded because an acknowledgement can be lost for good: a publish
        written to a server that stalls and is then restarted is never answered, and the
        client's future for it would wait forever (the relay with it)."""
        js = await self.context()
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for envelope in envelopes:
                futures.append(
                    await js.publish_async(
                        subject_of(self.stream, envelope["type"]),
                        json.dumps(envelope, separators=(",", ":")).encode(),
                        headers={MSG_ID_HEADER: envelope["id"]},
                        wait_stall=ACK_TIMEOUT_SECONDS,
                    )
                )
            async with asyncio.timeout(ACK_TIMEOUT_SECONDS):
                for future in futures:
                    await future
        finally:
            # An abandoned future holds one of the client's slots for pending publishes.
            for future in futures:
                if not future.cancel() and not future.cancelled():
                    future.exception()  # seen: a failed one is reported by the raise above

    async def aclose(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        # Not drain(): every publish already waited for its acknowledgement, and draining a
        # pull consumer's subscription waits out its timeout.
        if self.client is not None:
            await self.client.close()
