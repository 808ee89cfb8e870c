from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import SettingsConfigDict

from gateway.policy.document import SHIPPED_POLICY
from shared.settings import ComponentSettings


class CitizenIssuer(BaseModel):
    """An identity provider the gateway trusts for citizens (ID-porten, Entra ID): its ID
    tokens are exchanged for a Broen citizen token at POST /oauth/token (RFC 8693)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(description="The `iss` its tokens carry.")
    jwks_path: Path = Field(description="Its public keys (a JWKS file the operator keeps current).")
    audience: str = Field(description="The `aud` its tokens must carry (Broen's client there).")
    national_id_claim: str = Field("pid", description="The claim holding the national id.")
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")


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
    # Identity providers trusted for citizens, as JSON: [{"issuer": ..., "jwks_path": ...,
    # "audience": ..., "national_id_claim": "pid"}]. None by default.
    citizen_issuers: list[CitizenIssuer] = Field(default_factory=list)
    # Webhooks (gateway/events/): networks besides public addresses that targets may be in
    # (JSON list, e.g. ["10.20.0.0/16"]); dev mode also allows loopback.
    webhook_allowed_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = Field(
        default_factory=list
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60)
    # Failed deliveries are retried after base * 2^(attempt-1) seconds (at most `max`), with
    # jitter, until `window` after the event was due; then they are dead-lettered.
    webhook_retry_base_seconds: float = Field(5.0, gt=0)
    webhook_retry_max_seconds: float = Field(3600.0, gt=0)
    webhook_retry_window_seconds: float = Field(24 * 3600.0, gt=0)
    webhook_concurrency: int = Field(16, ge=1, le=256)
    # Requests per client (organisation and client id; a citizen per person), in the
    # notation of the `limits` library; counted in Redis when BROEN_REDIS_URL is set.
    rate_limit: str = "6000/minute"
    redis_url: str | None = Field(None, validation_alias="BROEN_REDIS_URL")
    # The largest request body the gateway reads; a larger one is refused with a 413 problem
    # before it is read whole (a batch of 1,000 timeline events is well under 1 MiB).
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # A body still arriving this long after the request began is refused with a 408 problem.
    body_timeout_seconds: float = Field(30.0, gt=0, le=600)
