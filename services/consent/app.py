from __future__ import annotations

from fastapi import FastAPI

from services.consent.models import OutboxEvent
from services.consent.receipts import ReceiptKeys
from services.consent.routes import internal, router
from services.consent.settings import ConsentSettings
from shared.app import create_service_app, service_lifespan
from shared.crypto import Keyring
from shared.settings import ensure_dev_mode_is_safe

COMPONENT = "consent"
TRUSTED_CALLERS = {"gateway", "participant", "messaging"}


def create_app(settings: ConsentSettings) -> FastAPI:
    ensure_dev_mode_is_safe(settings)
    lifespan = service_lifespan(
        settings,
        COMPONENT,
        TRUSTED_CALLERS,
        outbox=OutboxEvent,
        state={
            "keyring": Keyring.load(settings.keys_dir, COMPONENT),
            "receipt_keys": ReceiptKeys.load(settings.keys_dir),
        },
    )
    app = create_service_app(
        "Broen consent service", COMPONENT, settings, lifespan, outbox=OutboxEvent
    )
    app.include_router(router)
    app.include_router(internal)
    return app
