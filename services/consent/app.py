from __future__ import annotations

from fastapi import FastAPI

from services.consent.settings import ConsentSettings
from shared.app import create_service_app, service_lifespan
from shared.settings import ensure_dev_mode_is_safe

COMPONENT = "consent"
TRUSTED_CALLERS = {"gateway", "participant", "consent", "messaging"} - {COMPONENT}


def create_app(settings: ConsentSettings) -> FastAPI:
    """Health and readiness only so far; its API arrives with the consent issue."""
    ensure_dev_mode_is_safe(settings)
    lifespan = service_lifespan(settings, COMPONENT, TRUSTED_CALLERS)
    app = create_service_app("Broen consent service", lifespan)
    return app
