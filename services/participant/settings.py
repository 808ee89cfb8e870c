from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ComponentSettings


class ParticipantSettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="BROEN_PARTICIPANT_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/participant.db"
    port: int = 8001
