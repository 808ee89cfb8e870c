from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ComponentSettings


class ConsentSettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="BROEN_CONSENT_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/consent.db"
    port: int = 8002
