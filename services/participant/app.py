from __future__ import annotations

from fastapi import FastAPI

from services.participant.catalogue import load_catalogue
from services.participant.models import OutboxEvent
from services.participant.routes import event_types, internal, organisations, router, units
from services.participant.settings import ParticipantSettings
from shared.app import create_service_app, service_lifespan
from shared.crypto import Keyring
from shared.settings import ensure_dev_mode_is_safe

COMPONENT = "participant"
TRUSTED_CALLERS = {"gateway", "consent", "messaging"}


def create_app(settings: ParticipantSettings) -> FastAPI:
    ensure_dev_mode_is_safe(settings)
    # Checked now: a catalogue that does not validate stops the start with its reason.
    catalogue = load_catalogue(settings.catalogue_path)
    lifespan = service_lifespan(
        settings,
        COMPONENT,
        TRUSTED_CALLERS,
        outbox=OutboxEvent,
        state={"keyring": Keyring.load(settings.keys_dir, COMPONENT), "catalogue": catalogue},
    )
    app = create_service_app(
        "Broen participant service", COMPONENT, settings, lifespan, outbox=OutboxEvent
    )
    app.include_router(router)
    app.include_router(organisations)
    app.include_router(units)
    app.include_router(event_types)
    app.include_router(internal)
    return app
