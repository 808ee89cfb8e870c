"""A service behind the gateway answers nothing without a valid internal token."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OKPKey

from services.participant.app import create_app
from services.participant.settings import ParticipantSettings
from shared.internal_auth import HEADER, CallerContext, InternalTokenSigner
from shared.keys import load_internal_signing_key

pytestmark = pytest.mark.anyio

CALLER = CallerContext(kind="system", orgnr="310123455", agency_type="skole")


@pytest.fixture
async def service(
    database_url: Callable[[str], str], keys_dir: Path
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        ParticipantSettings(database_url=database_url("participant"), keys_dir=keys_dir)
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://participant") as client:
            yield client


def _signed(key: OKPKey, **claims: object) -> str:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "gateway",
        "aud": "participant",
        "iat": now,
        "exp": now + 60,
        "ctx": CALLER.model_dump(mode="json"),
    }
    base.update(claims)
    return jwt.encode({"alg": "Ed25519", "kid": key.kid}, base, key, algorithms=["Ed25519"])


async def test_a_service_reached_without_an_internal_token_refuses(
    service: httpx.AsyncClient,
) -> None:
    response = await service.get("/api/v1/organisations")

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda key, own: _signed(own), id="signed-by-an-unknown-key"),
        pytest.param(lambda key, own: _signed(key, aud="messaging"), id="for-another-service"),
        pytest.param(lambda key, own: _signed(key, exp=int(time.time()) - 120), id="expired"),
        pytest.param(lambda key, own: _signed(key, iss="somebody"), id="untrusted-issuer"),
        pytest.param(lambda key, own: _signed(key)[:-4] + "AAAA", id="tampered-signature"),
    ],
)
async def test_a_forged_or_stale_internal_token_is_refused(
    service: httpx.AsyncClient, keys_dir: Path, forge: Callable[[OKPKey, OKPKey], str]
) -> None:
    gateway_key = load_internal_signing_key(keys_dir, "gateway")
    stranger = OKPKey.generate_key("Ed25519", parameters={"kid": gateway_key.kid})

    response = await service.get(
        "/api/v1/organisations", headers={HEADER: forge(gateway_key, stranger)}
    )

    assert response.status_code == 401


async def test_the_gateways_internal_token_is_accepted(
    service: httpx.AsyncClient, keys_dir: Path
) -> None:
    signer = InternalTokenSigner("gateway", load_internal_signing_key(keys_dir, "gateway"))

    response = await service.get(
        "/api/v1/organisations", headers={HEADER: signer.token_for("participant", CALLER)}
    )

    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
async def test_a_service_publishes_no_api_description(
    service: httpx.AsyncClient, path: str
) -> None:
    response = await service.get(path)

    assert response.status_code == 404
