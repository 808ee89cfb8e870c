"""Prometheus metrics, served at `/metrics` by every component.

Labels are route templates, statuses, outcomes and reasons: never an id, a name or a value.
Every metric carries the component, so the four apps of an in-process test (one registry)
stay apart; in production each process is one component and the scraper adds its own
labels (job, instance).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select

from shared.db import sqlite_writing
from shared.outbox import OutboxMixin

REQUESTS = Counter(
    "broen_http_requests",
    "Requests answered, by route template and status.",
    ["component", "method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "broen_http_request_duration_seconds",
    "Time to answer a request, by route template.",
    ["component", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
POLICY_DECISIONS = Counter(
    "broen_policy_field_decisions",
    "Field decisions written to the audit log, by outcome (released, withheld) and reason.",
    ["outcome", "reason"],
)
AUDIT_APPENDS = Counter("broen_audit_appends", "Audit entries appended (committed).")
AUDIT_BATCHES = Counter("broen_audit_batches", "Audit group commits.")
AUDIT_FAILURES = Counter(
    "broen_audit_append_failures", "Audit entries that could not be appended (the request failed)."
)
OUTBOX_PENDING = Gauge(
    "broen_outbox_pending_events",
    "Events in the service's outbox not yet delivered, at the last scrape.",
    ["component"],
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "broen_outbox_oldest_pending_age_seconds",
    "Age of the oldest event in the outbox not yet delivered (0 when none), at the last scrape.",
    ["component"],
)
EVENTS_INGESTED = Counter(
    "broen_events_ingested", "Events the gateway took into its event log.", ["transport"]
)
EVENT_LAG_SECONDS = Histogram(
    "broen_event_ingest_lag_seconds",
    "From an event's time (written to the outbox) to its arrival in the gateway's event log.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
WEBHOOK_DELIVERIES = Counter(
    "broen_webhook_deliveries",
    "Webhook deliveries by outcome: delivered, withheld (the policy), failed (an attempt "
    "failed), gone (410: the subscription is disabled); dead counts those given up.",
    ["outcome"],
)
NATS_CONNECTED = Gauge(
    "broen_nats_connected",
    "1 while the component is connected to NATS, 0 while it is not (its events wait in the "
    "outbox); only where BROEN_NATS_URL is set.",
    ["component"],
)
RATE_LIMITED = Counter("broen_rate_limited", "Requests refused with 429 by the rate limit.")


def install_metrics(
    app: FastAPI, component: str, *, outbox: type[OutboxMixin] | None = None
) -> None:
    """`GET /metrics` in the Prometheus text format. A service with an outbox reads its
    pending count and oldest age from its database at each scrape (the partial index on
    pending rows keeps that cheap)."""
    refresh: Callable[[Request], Awaitable[None]] | None = None
    if outbox is not None:
        model = outbox

        async def refresh(request: Request) -> None:
            with sqlite_writing(False):
                async with request.app.state.sessionmaker() as session:
                    count, oldest = (
                        await session.execute(
                            select(func.count(), func.min(model.created_at)).where(
                                model.published_at.is_(None)
                            )
                        )
                    ).one()
            OUTBOX_PENDING.labels(component).set(count)
            age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
            OUTBOX_OLDEST_SECONDS.labels(component).set(max(age, 0.0))

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if refresh is not None:
            await refresh(request)
        jetstream = getattr(request.app.state, "jetstream", None)
        if jetstream is not None:
            NATS_CONNECTED.labels(component).set(1 if jetstream.connected else 0)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# Any token is a method to HTTP: one a client makes up is counted as "other", so a caller
# cannot add a series per request.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(component: str, method: str, route: str, status: int, seconds: float) -> None:
    method = method if method in METHODS else "other"
    REQUESTS.labels(component, method, route, str(status)).inc()
    REQUEST_SECONDS.labels(component, method, route).observe(seconds)
