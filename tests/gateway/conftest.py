"""A minimal gateway for the OAuth tests: the oauth router, problem handlers and one
protected route. Swap `gateway_app` for the real `create_app` when it exists."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi import Depends, FastAPI
from jwt.algorithms import OKPAlgorithm

from gateway.deps import CallerDep, require_scope
from gateway.oauth import AuthRuntime, register_client
from gateway.oauth import router as oauth_router
from gateway.ratelimit import RateLimits
from gateway.settings import GatewaySettings
from shared.db import make_engine, make_sessionmaker
from shared.internal_auth import CallerContext
from shared.problems import install_problem_handlers

ISSUER = "https://gateway.broen.test"
TOKEN_URL = ISSUER + "/oauth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def gateway_settings(database_url: Callable[[str], str], keys_dir: Path) -> GatewaySettings:
    return GatewaySettings(
        database_url=database_url("gateway"), keys_dir=keys_dir, issuer=ISSUER, env="production"
    )


@pytest.fixture
async def gateway_app(gateway_settings: GatewaySettings) -> AsyncIterator[FastAPI]:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(oauth_router)

    @app.get("/api/v1/whoami")
    async def whoami(
        caller: Annotated[CallerContext, Depends(require_scope("participants:read"))],
    ) -> dict[str, Any]:
        return caller.model_dump()

    @app.get("/api/v1/audit-probe")
    async def audit_probe(
        caller: Annotated[CallerContext, Depends(require_scope("audit:read"))],
    ) -> dict[str, Any]:
        return caller.model_dump()

    @app.get("/api/v1/me/whoami")
    async def citizen_whoami(caller: CallerDep) -> dict[str, Any]:
        return caller.model_dump()

    @app.get("/api/v1/me/scoped-probe")
    async def citizen_scoped_probe(
        caller: Annotated[CallerContext, Depends(require_scope("participants:read"))],
    ) -> dict[str, Any]:
        return caller.model_dump()

    engine = make_engine(gateway_settings.database_url)
    app.state.settings = gateway_settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.auth = AuthRuntime.load(gateway_settings)
    app.state.rate_limits = RateLimits(gateway_settings.rate_limit, None)
    yield app
    await engine.dispose()


@pytest.fixture
async def http(gateway_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway_app)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
        yield client


@dataclass
class RegisteredClient:
    client_id: str
    kid: str
    private_key: ed25519.Ed25519PrivateKey

    def assertion(self, **overrides: Any) -> str:
        """A client assertion signed with PyJWT; overrides replace claims (None drops one)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": TOKEN_URL,
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        claims = {name: value for name, value in claims.items() if value is not None}
        return pyjwt.encode(claims, self.private_key, algorithm="EdDSA", headers={"kid": self.kid})


def public_jwk(public_key: Any, kid: str, algorithm: Any = OKPAlgorithm) -> dict[str, Any]:
    jwk: dict[str, Any] = algorithm.to_jwk(public_key, as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


@pytest.fixture
def register(gateway_settings: GatewaySettings) -> Callable[..., Any]:
    """`await register(scopes=...)`: a client of org 974760673 with a fresh Ed25519 key."""

    async def _register(
        *, client_id: str | None = None, scopes: str = "participants:read participants:write"
    ) -> RegisteredClient:
        client_id = client_id or f"school-sis-{uuid.uuid4().hex[:8]}"
        private_key = ed25519.Ed25519PrivateKey.generate()
        kid = f"{client_id}-1"
        await register_client(
            gateway_settings,
            client_id=client_id,
            orgnr="974760673",
            agency_type="skole",
            scopes=scopes,
            jwks={"keys": [public_jwk(private_key.public_key(), kid)]},
        )
        return RegisteredClient(client_id, kid, private_key)

    return _register


def token_form(assertion: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }
