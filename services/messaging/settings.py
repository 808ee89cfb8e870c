from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ComponentSettings


class MessagingSettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="BROEN_MESSAGING_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/messaging.db"
    port: int = 8003
