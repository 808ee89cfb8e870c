"""A background task that repeats one step: at once again while the step says more is
waiting, otherwise after the interval; once the steps have found nothing to do for
`QUIET_SECONDS`, the interval doubles, up to `IDLE_CAP` intervals (a quiet system is asked
less often; the first work found brings the interval back, and steady traffic, however
slow, keeps it). A failing step is logged by its error type only (no message: it may hold
data) and tried again after the interval. Closing waits for the step under way, so a
graceful stop never leaves one half done."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from enum import Enum

log = logging.getLogger("broen.background")

IDLE_CAP = 5
QUIET_SECONDS = 2.0


class Progress(Enum):
    MORE = "more"  # more is waiting: step again at once
    SOME = "some"  # did some work: step again after the interval
    NONE = "none"  # nothing to do: wait longer each time


def progress(done: int, batch: int) -> Progress:
    """What a step that handled `done` items of at most `batch` says."""
    if done >= batch:
        return Progress.MORE
    return Progress.SOME if done else Progress.NONE


class Repeating:
    def __init__(
        self, name: str, step: Callable[[], Awaitable[Progress]], *, interval_seconds: float
    ) -> None:
        self.name = name
        self._step = step
        self._interval = interval_seconds
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._interval
        last_work = loop.time()
        while not self._stop.is_set():
            try:
                done = await self._step()
            except Exception as error:
                log.warning("%s failed", self.name, extra={"error_type": type(error).__name__})
                done = Progress.SOME
            if done is not Progress.NONE:
                wait, last_work = self._interval, loop.time()
                if done is Progress.MORE:
                    continue
            elif loop.time() - last_work > QUIET_SECONDS:
                wait = min(wait * 2, self._interval * IDLE_CAP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=wait)

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
