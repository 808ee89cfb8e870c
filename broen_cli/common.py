"""What every CLI command shares: component settings, `--json` output, clean refusals."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NoReturn

import typer

from gateway.settings import GatewaySettings
from services.consent.settings import ConsentSettings
from services.messaging.settings import MessagingSettings
from services.participant.settings import ParticipantSettings
from shared.settings import ComponentSettings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS: dict[str, type[ComponentSettings]] = {
    "gateway": GatewaySettings,
    "participant": ParticipantSettings,
    "consent": ConsentSettings,
    "messaging": MessagingSettings,
}
MIGRATIONS = {
    "gateway": ROOT / "gateway" / "migrations",
    "participant": ROOT / "services" / "participant" / "migrations",
    "consent": ROOT / "services" / "consent" / "migrations",
    "messaging": ROOT / "services" / "messaging" / "migrations",
}

JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout.")


def settings_for(component: str) -> ComponentSettings:
    return SETTINGS[component]()


def fail(message: str) -> NoReturn:
    typer.echo(f"broen: {message}", err=True)
    raise typer.Exit(1)


def emit(as_json: bool, document: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(document, indent=2, default=str) if as_json else text)


def require_dev_mode() -> None:
    if os.environ.get("BROEN_ENV", "production") != "dev":
        fail(
            "`broen dev` commands only work in dev mode (BROEN_ENV=dev, which `make run` sets); "
            "this is production"
        )
