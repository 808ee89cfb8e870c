"""Rate limits per client (API.md, ARCHITECTURE.md "Reliability rules"): keyed on the
organisation and client id of the token, never the IP (a school system behind one address
is many schools; one client is one integration). The `limits` library counts, in memory by
default and in Redis when `BROEN_REDIS_URL` is set, so every gateway replica counts
against the same limit.

Over the limit the answer is a 429 problem with `Retry-After`. If Redis cannot answer,
requests are let through and the failure is logged: the limit protects the platform, and
an outage of the counter should not become an outage of the platform.
"""

from __future__ import annotations

import logging
import math
import time

import coredis
from limits import RateLimitItem, parse
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from shared.internal_auth import CallerContext
from shared.metrics import RATE_LIMITED
from shared.problems import Problem

log = logging.getLogger("broen.ratelimit")


class RateLimited(Problem):
    status = 429
    type = "rate-limited"
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "This client has used its requests for now; try again after Retry-After seconds.",
            retry_after=retry_after,
        )
        self.headers = {"Retry-After": str(retry_after)}


class RateLimits:
    def __init__(self, limit: str, redis_url: str | None) -> None:
        self.item: RateLimitItem = parse(limit)
        self._pool: coredis.ConnectionPool | None = None
        if redis_url:
            # Our own pool (the one `limits` would make has no public way to close it).
            self._pool = coredis.ConnectionPool.from_url(redis_url)
            storage = storage_from_string(
                "async+" + redis_url,
                connection_pool=self._pool,  # type: ignore[arg-type]  # passed to coredis
            )
        else:
            storage = storage_from_string("async+memory://")
        self.limiter = FixedWindowRateLimiter(storage)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()

    async def check(self, caller: CallerContext) -> None:
        """Count one request of the caller's client; a 429 problem when over the limit."""
        await self.count(*_key_of(caller))

    async def check_token_request(self, client_id: str) -> None:
        """Count one token request of a client (in its own window: a client that used its
        requests can still get a token for when the window has passed)."""
        await self.count("token", client_id)

    async def count(self, *key: str) -> None:
        try:
            allowed = await self.limiter.hit(self.item, *key)
            if allowed:
                return
            stats = await self.limiter.get_window_stats(self.item, *key)
        except Exception as error:  # the counter is away: let the request through
            log.warning("rate limit not checked", extra={"error_type": type(error).__name__})
            return
        RATE_LIMITED.inc()
        raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))


def _key_of(caller: CallerContext) -> tuple[str, ...]:
    if caller.kind == "citizen":
        return ("citizen", caller.participant_id or "")
    return (caller.orgnr or "", caller.client_id or "")
