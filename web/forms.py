"""Forms submitted twice (a double click, a resend after a slow answer) act once: each form
carries a one-time key, and a second submit of the same key gets the first one's answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

KEY_FIELD = "form_key"


def new_form_key() -> str:
    return str(uuid.uuid4())


class SubmittedForms:
    """Per web app process. The keys are the signed-in person's own, so no one can reach
    another person's answer by guessing."""

    def __init__(self, remember_seconds: float = 3600.0) -> None:
        self._remember_seconds = remember_seconds
        self._done: dict[str, tuple[float, str]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def once(self, owner: str, key: str, act: Callable[[], Awaitable[str]]) -> str:
        """`act`'s answer (where to go next), acting only the first time `key` is seen. A
        failed act is not remembered: the person may correct the form and send it again."""
        try:
            slot = f"{owner}:{uuid.UUID(key)}"
        except ValueError:
            return await act()
        lock = self._locks.setdefault(slot, asyncio.Lock())
        async with lock:
            done = self._done.get(slot)
            if done is not None:
                return done[1]
            location = await act()
            self._done[slot] = (time.monotonic(), location)
        self._forget_old()
        return location

    def _forget_old(self) -> None:
        oldest = time.monotonic() - self._remember_seconds
        for slot in [slot for slot, (at, _) in self._done.items() if at < oldest]:
            del self._done[slot]
            lock = self._locks.get(slot)
            if lock is not None and not lock.locked():
                del self._locks[slot]
