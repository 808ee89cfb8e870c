"""The outbox relay: publishes a service's pending outbox events to JetStream, oldest
first, and marks them published once JetStream acknowledged them. Killed in between, it
publishes them again after a restart: at least once, each with the same id."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.background import Progress, Repeating, progress
from shared.db import sqlite_writing
from shared.jetstream import JetStream
from shared.outbox import OUTBOX_BATCH, OutboxMixin, mark_published, pending


class OutboxRelay:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        model: type[OutboxMixin],
        jetstream: JetStream,
        *,
        interval_seconds: float,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.model = model
        self.jetstream = jetstream
        self._loop = Repeating("outbox relay", self._step, interval_seconds=interval_seconds)

    async def relay_once(self) -> int:
        """Publish one batch of pending events; the number published."""
        await self.jetstream.context()  # NATS not there yet: raises, nothing held meanwhile
        async with self.sessionmaker() as session:
            if session.get_bind().dialect.name == "postgresql":
                # The rows stay locked while they are published: another replica's relay
                # skips them instead of publishing them too.
                envelopes = await pending(session, self.model, limit=OUTBOX_BATCH)
                if envelopes:
                    await self.jetstream.publish(envelopes)
                    await mark_published(session, self.model, [e["id"] for e in envelopes])
                    await session.commit()
                return len(envelopes)
        # SQLite (one process writes): read, publish, then mark in a short write
        # transaction; holding the database's one write lock while NATS acknowledges
        # would stop every request that writes meanwhile.
        with sqlite_writing(False):
            async with self.sessionmaker() as session:
                envelopes = await pending(session, self.model, limit=OUTBOX_BATCH)
        if envelopes:
            await self.jetstream.publish(envelopes)
            async with self.sessionmaker() as session:
                await mark_published(session, self.model, [e["id"] for e in envelopes])
                await session.commit()
        return len(envelopes)

    async def _step(self) -> Progress:
        return progress(await self.relay_once(), OUTBOX_BATCH)

    def start(self) -> None:
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.aclose()
