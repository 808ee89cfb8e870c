"""NATS JetStream, as Broen uses it: one stream holds every service's domain events, each
published with its CloudEvents id as `Nats-Msg-Id` (JetStream drops a repeat within its
duplicate window; consumers deduplicate by the id beyond it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from shared.events import EVENT_TYPE_PREFIX

MSG_ID_HEADER = "Nats-Msg-Id"
DUPLICATE_WINDOW_SECONDS = 600.0


def subject_prefix(stream: str) -> str:
    return stream.lower()


def subject_of(stream: str, event_type: str) -> str:
    """`no.broen.assignment.started` in stream BROEN travels as `broen.assignment.started`."""
    return f"{subject_prefix(stream)}.{event_type.removeprefix(EVENT_TYPE_PREFIX)}"


class JetStream:
    """A connection to NATS and the stream, opened with `connect` and closed with `aclose`."""

    def __init__(self, client: Client, stream: str) -> None:
        self.client = client
        self.stream = stream
        self.js: JetStreamContext = client.jetstream()

    @classmethod
    async def connect(cls, url: str, stream: str) -> JetStream:
        client = await nats.connect(
            url, name="broen", max_reconnect_attempts=-1, reconnect_time_wait=0.5
        )
        jetstream = cls(client, stream)
        await jetstream.ensure_stream()
        return jetstream

    async def ensure_stream(self) -> None:
        try:
            await self.js.stream_info(self.stream)
        except NotFoundError:
            await self.js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[f"{subject_prefix(self.stream)}.>"],
                    duplicate_window=DUPLICATE_WINDOW_SECONDS,
                )
            )

    async def publish(self, envelopes: Sequence[dict[str, Any]]) -> None:
        """Publish the envelopes and return once JetStream has stored every one (raises if
        any was not acknowledged: the caller then publishes them again)."""
        futures = [
            await self.js.publish_async(
                subject_of(self.stream, envelope["type"]),
                json.dumps(envelope, separators=(",", ":")).encode(),
                headers={MSG_ID_HEADER: envelope["id"]},
                wait_stall=5.0,
            )
            for envelope in envelopes
        ]
        for future in futures:
            await future

    async def aclose(self) -> None:
        # Not drain(): every publish already waited for its acknowledgement, and draining a
        # pull consumer's subscription waits out its timeout.
        await self.client.close()
