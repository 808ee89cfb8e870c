from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveInt
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
    # Read by `broen retention run` (services/participant/retention.py): no rule, no deletion.
    retention_default_years: int | None = Field(
        None,
        ge=1,
        description="Years a participant is kept after their follow-up ended, for programmes "
        "without a rule of their own; unset: only participants whose every programme has a "
        "rule are ever deleted.",
    )
    retention_years_by_programme: dict[str, PositiveInt] = Field(
        default_factory=dict,
        description='Years per programme, as JSON: {"vgo": 5, "introduksjonsprogram": 10}.',
    )
