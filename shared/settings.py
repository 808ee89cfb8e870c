"""Settings every component shares; each component subclasses with its own env prefix."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["dev", "production"]


class ComponentSettings(BaseSettings):
    """Settings of one component (a service or the gateway).

    `BROEN_ENV` and `BROEN_KEYS_DIR` are shared by every component; the rest is read
    with the component's own prefix, e.g. `BROEN_PARTICIPANT_DATABASE_URL`.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    env: Environment = Field("production", validation_alias="BROEN_ENV")
    keys_dir: Path = Field(Path("var/keys"), validation_alias="BROEN_KEYS_DIR")
    database_url: str
    database_pool_size: int = Field(20, ge=1, le=500)
    host: str = "127.0.0.1"
    port: int
    log_level: str = "INFO"
    # Events (ARCHITECTURE.md): with a NATS URL each service's relay publishes its outbox to
    # JetStream and the gateway consumes the stream; without one the gateway takes the
    # events from the services' outboxes (the embedded default).
    nats_url: str | None = Field(None, validation_alias="BROEN_NATS_URL")
    nats_stream: str = Field(
        "BROEN", pattern=r"^[A-Z][A-Z0-9_]{0,31}$", validation_alias="BROEN_NATS_STREAM"
    )
    events_interval_seconds: float = Field(0.1, gt=0, le=60)
    # Traces (shared/telemetry.py): exported over OTLP/HTTP to this collector; off without.
    otlp_endpoint: str | None = Field(None, validation_alias="BROEN_OTLP_ENDPOINT")

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"


class ConfigurationError(RuntimeError):
    """The component cannot start with this configuration; the message says why."""


class DevModeRefused(ConfigurationError):
    """Dev mode was asked for where it would expose dev-only features."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_dev_mode_is_safe(settings: ComponentSettings) -> None:
    """Refuse dev mode unless the database is SQLite and the listener is on loopback."""
    if not settings.is_dev:
        return
    if not settings.database_url.startswith("sqlite"):
        raise DevModeRefused(
            "BROEN_ENV=dev is only allowed with the embedded SQLite databases; "
            "unset BROEN_ENV (production) to use PostgreSQL"
        )
    if not is_loopback(settings.host):
        raise DevModeRefused(
            f"BROEN_ENV=dev is only allowed on a loopback listener, not {settings.host}; "
            "unset BROEN_ENV (production) to listen on other addresses"
        )
