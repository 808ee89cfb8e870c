from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from services.messaging.clients import Assignments
from services.messaging.models import OutboxEvent
from services.messaging.overdue import OverdueWatch
from services.messaging.routes import router
from services.messaging.settings import MessagingSettings
from services.messaging.workdays import WorkingCalendar
from shared.app import create_service_app, service_lifespan
from shared.clients import Upstream
from shared.crypto import Keyring
from shared.internal_auth import InternalTokenSigner
from shared.keys import load_internal_signing_key
from shared.settings import ensure_dev_mode_is_safe

COMPONENT = "messaging"
TRUSTED_CALLERS = {"gateway"}


def create_app(
    settings: MessagingSettings, *, participant_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """`participant_transport` lets tests put the participant service in-process."""
    ensure_dev_mode_is_safe(settings)
    signer = InternalTokenSigner(COMPONENT, load_internal_signing_key(settings.keys_dir, COMPONENT))
    calendar = WorkingCalendar.of(settings.holiday_country, settings.time_zone)
    base = service_lifespan(
        settings,
        COMPONENT,
        TRUSTED_CALLERS,
        outbox=OutboxEvent,
        state={"keyring": Keyring.load(settings.keys_dir, COMPONENT), "calendar": calendar},
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with base(app):
            assignments = Assignments(
                Upstream(
                    "participant",
                    settings.participant_url,
                    signer,
                    timeout_seconds=settings.upstream_timeout_seconds,
                    connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
                    transport=participant_transport,
                    tracing=app.state.tracing,
                )
            )
            app.state.assignments = assignments
            watch = OverdueWatch(
                app.state.sessionmaker,
                calendar,
                working_days=settings.overdue_after_working_days,
                interval_seconds=settings.overdue_check_interval_seconds,
            )
            app.state.overdue = watch
            watch.start()
            try:
                yield
            finally:
                await watch.aclose()
                await assignments.aclose()

    app = create_service_app(
        "Broen messaging service", COMPONENT, settings, lifespan, outbox=OutboxEvent
    )
    app.include_router(router)
    return app
