from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.participant.routes import organisations, router
from services.participant.settings import ParticipantSettings
from shared.app import install_common, service_state
from shared.crypto import Keyring
from shared.settings import ensure_dev_mode_is_safe

COMPONENT = "participant"
TRUSTED_CALLERS = {"gateway", "consent", "messaging"}


def create_app(settings: ParticipantSettings) -> FastAPI:
    ensure_dev_mode_is_safe(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_state(app, settings, COMPONENT, TRUSTED_CALLERS):
            app.state.keyring = Keyring.load(settings.keys_dir, COMPONENT)
            yield

    app = FastAPI(title="Broen participant service", version="1", lifespan=lifespan)
    install_common(app)
    app.include_router(router)
    app.include_router(organisations)
    return app
