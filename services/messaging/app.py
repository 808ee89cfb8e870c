from __future__ import annotations

from fastapi import FastAPI

from services.messaging.settings import MessagingSettings
from shared.app import create_service_app, service_lifespan
from shared.settings import ensure_dev_mode_is_safe

COMPONENT = "messaging"
TRUSTED_CALLERS = {"gateway", "participant", "consent", "messaging"} - {COMPONENT}


def create_app(settings: MessagingSettings) -> FastAPI:
    """Health and readiness only so far; its API arrives with the messaging issue."""
    ensure_dev_mode_is_safe(settings)
    lifespan = service_lifespan(settings, COMPONENT, TRUSTED_CALLERS)
    app = create_service_app("Broen messaging service", lifespan)
    return app
