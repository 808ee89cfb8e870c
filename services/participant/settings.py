from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.participant.catalogue import SHIPPED_CATALOGUE
from shared.settings import ComponentSettings


class ParticipantSettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="BROEN_PARTICIPANT_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/participant.db"
    port: int = 8001
    catalogue_path: Path = Field(
        SHIPPED_CATALOGUE, description="The event catalogue (TOML); the shipped one by default."
    )
