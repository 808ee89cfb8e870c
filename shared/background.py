"""A background task that repeats one step: at once again while the step says there is more
to do, otherwise after an interval. A failing step is logged by its error type only (no
message: it may hold data) and tried again after the interval. Closing waits for the step
under way, so a graceful stop never leaves one half done."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("broen.background")


class Repeating:
    def __init__(
        self, name: str, step: Callable[[], Awaitable[bool]], *, interval_seconds: float
    ) -> None:
        self.name = name
        self._step = step
        self._interval = interval_seconds
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                more = await self._step()
            except Exception as error:
                log.warning("%s failed", self.name, extra={"error_type": type(error).__name__})
                more = False
            if not more:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=self._interval)

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
