from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ComponentSettings


class MessagingSettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="BROEN_MESSAGING_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/messaging.db"
    port: int = 8003
    # Messaging reads assignments (who holds a role now) from the participant service.
    participant_url: str = "http://127.0.0.1:8001"
    upstream_timeout_seconds: float = 5.0
    upstream_connect_timeout_seconds: float = 1.0
    # A thread waiting on its recipient this many working days is overdue: the recipient
    # unit's inbox is told (a `thread.overdue` event).
    overdue_after_working_days: int = Field(2, ge=1, le=30)
    overdue_check_interval_seconds: float = Field(300.0, gt=0)
    # Whose public holidays are not working days (a `holidays` country code), and where a
    # working day begins and ends.
    holiday_country: str = "NO"
    time_zone: str = "Europe/Oslo"
