from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from gateway.policy.document import SHIPPED_POLICY
from shared.settings import ComponentSettings


class GatewaySettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="BROEN_GATEWAY_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/gateway.db"
    port: int = 8000
    # The issuer of access tokens: the public base URL of the gateway.
    issuer: str = "http://127.0.0.1:8000"
    access_token_lifetime_seconds: int = 300
    participant_url: str = "http://127.0.0.1:8001"
    consent_url: str = "http://127.0.0.1:8002"
    messaging_url: str = "http://127.0.0.1:8003"
    upstream_timeout_seconds: float = 5.0
    upstream_connect_timeout_seconds: float = 1.0
    # The latest signed audit head is exported here, outside the database (gateway/audit.py).
    audit_head_file: Path = Path("var/audit-head.json")
    audit_head_interval_seconds: float = Field(60.0, gt=0)
    # The personvern policy document; a deployment may point at its own.
    policy_path: Path = SHIPPED_POLICY
