"""Settings of the web app (`BROEN_WEB_*`). It has no database: everything it shows comes
from the gateway's public API, with the signed-in person's own token."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import Environment
from web.keys import CLIENT_KEY_FILE, SESSION_KEY_FILE


class OidcProvider(BaseModel):
    """An OpenID Connect provider people sign in with (authlib's client runs the code flow)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metadata_url: str = Field(
        description="Its discovery document (.well-known/openid-configuration)."
    )
    client_id: str
    client_secret: str | None = Field(None, description="Or none, for a public client with PKCE.")
    scope: str = "openid"


class StaffOidcProvider(OidcProvider):
    """Staff sign-in (e.g. the county's or NAV's Entra ID): the ID token names the staff
    member by their Broen staff id and their organisation."""

    staff_id_claim: str = "broen_staff_id"
    orgnr_claim: str = "orgnr"


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BROEN_WEB_", extra="ignore", populate_by_name=True
    )

    env: Environment = Field("production", validation_alias="BROEN_ENV")
    keys_dir: Path = Field(Path("var/keys"), validation_alias="BROEN_KEYS_DIR")
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    # Where the web app is reached (sign-in callbacks) and the gateway it calls.
    public_url: str = "http://127.0.0.1:8080"
    gateway_url: str = "http://127.0.0.1:8000"
    gateway_timeout_seconds: float = Field(10.0, gt=0, le=60)
    # The web app is a registered API client of every organisation whose staff use it: one
    # client id per organisation (JSON, {"orgnr": "client id"}), all holding the public key
    # of `client_key_file` (a private JWK in the key directory).
    staff_clients: dict[str, str] = Field(default_factory=dict)
    # The client that exchanges a citizen's ID token for a citizen token (RFC 8693).
    citizen_client: str | None = None
    client_key_file: str = CLIENT_KEY_FILE
    # Signs the session cookie; a file in the key directory (`broen admin keys init`).
    session_key_file: str = SESSION_KEY_FILE
    # A session ends after this long without a request, and after `session_max_seconds`.
    session_idle_seconds: int = Field(3600, ge=60)
    session_max_seconds: int = Field(10 * 3600, ge=60)
    staff_oidc: StaffOidcProvider | None = None
    citizen_oidc: OidcProvider | None = None
    # Dev mode only: who the demo sign-in offers (written by `broen dev up`).
    demo_people_file: Path = Path("var/demo/web-sign-in.json")

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def secure_cookies(self) -> bool:
        return not self.is_dev
