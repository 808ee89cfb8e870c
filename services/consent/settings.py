from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from shared.settings import ComponentSettings


class ConsentSettings(ComponentSettings):
    model_config = SettingsConfigDict(env_prefix="BROEN_CONSENT_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///var/consent.db"
    port: int = 8002
    # The `iss` of consent receipts: the public base URL of the gateway (its issuer).
    receipt_issuer: str = "http://127.0.0.1:8000"
    # The controllers' privacy notice (Kantara's policyUrl), stated in every receipt.
    privacy_policy_url: str | None = None
