"""Citizens from an identity provider (as ID-porten would vouch for them): RFC 8693 token
exchange at the gateway, the national id mapped through the participant service's blind
index, for the participant themselves or a guardian acting for a minor."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from gateway.app import create_app
from gateway.settings import CitizenIssuer
from tests.system.conftest import ISSUER, Organisation, Stack
from tests.system.test_guardians import GUARDIAN, minor, record_guardian

pytestmark = pytest.mark.anyio

IDPORTEN = "https://idporten.test"
AUDIENCE = "broen-innbygger"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"


@dataclass
class Provider:
    key: RSAKey
    http: httpx.AsyncClient
    stack: Stack

    def id_token(self, national_id: str, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": IDPORTEN,
            "aud": AUDIENCE,
            "sub": "idporten-pairwise-sub",
            "iat": now,
            "exp": now + 120,
            "pid": national_id,
            **overrides,
        }
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)

    async def exchange(self, app: Organisation, token: str, **extra: str) -> httpx.Response:
        form = {
            "grant_type": EXCHANGE,
            "subject_token": token,
            "subject_token_type": ID_TOKEN,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.stack.assertion(app),
            **extra,
        }
        return await self.http.post("/oauth/token", data=form)


@pytest.fixture
async def provider(stack: Stack, tmp_path: Path) -> AsyncIterator[Provider]:
    key = RSAKey.generate_key(2048, parameters={"kid": "idporten-1"})
    jwks = tmp_path / "idporten.jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    settings = stack.gateway_settings.model_copy(
        update={
            "citizen_issuers": [CitizenIssuer(issuer=IDPORTEN, jwks_path=jwks, audience=AUDIENCE)]
        }
    )
    gateway = create_app(
        settings,
        upstream_transports={
            "participant": httpx.ASGITransport(app=stack.participant),
            "consent": httpx.ASGITransport(app=stack.consent),
        },
    )
    async with gateway.router.lifespan_context(gateway):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway), base_url=ISSUER
        ) as http:
            yield Provider(key, http, stack)


async def test_a_participant_signed_in_with_their_identity_provider_gets_a_citizen_token(
    stack: Stack, provider: Provider
) -> None:
    w, _ = await minor(stack)
    national_id = w.national_id

    exchanged = await provider.exchange(w.skole, provider.id_token(national_id))

    assert exchanged.status_code == 200, exchanged.text
    assert national_id not in exchanged.text
    token = exchanged.json()["access_token"]
    caller = stack.gateway.state.auth.tokens.verify(token)
    assert (caller.kind, caller.participant_id, caller.acting_as) == (
        "citizen",
        w.participant,
        "participant",
    )
    log = await provider.http.get(
        "/api/v1/me/access-log", headers={"Authorization": f"Bearer {token}"}
    )
    assert log.status_code == 200


async def test_a_guardian_signed_in_acts_for_their_ward_and_for_no_one_else(
    stack: Stack, provider: Provider
) -> None:
    w, _ = await minor(stack)
    await record_guardian(stack, w)

    as_guardian = await provider.exchange(
        w.skole, provider.id_token(GUARDIAN), acting_for=w.participant
    )
    for_a_stranger = await provider.exchange(
        w.skole, provider.id_token(GUARDIAN), acting_for="00000000-0000-4000-8000-000000000000"
    )
    as_themselves = await provider.exchange(w.skole, provider.id_token(GUARDIAN))

    assert as_guardian.status_code == 200, as_guardian.text
    caller = stack.gateway.state.auth.tokens.verify(as_guardian.json()["access_token"])
    assert (caller.participant_id, caller.acting_as) == (w.participant, "guardian")
    claims = pyjwt.decode(as_guardian.json()["access_token"], options={"verify_signature": False})
    assert GUARDIAN not in json.dumps(claims) and claims["sub"].startswith("guardian:")
    # Not a ward, and not a participant: one answer, that says nothing more.
    assert for_a_stranger.status_code == as_themselves.status_code == 400
    assert for_a_stranger.json() == as_themselves.json()
    assert for_a_stranger.json()["error"] == "invalid_grant"


async def test_tokens_broen_does_not_trust_are_refused_without_echoing_them(
    stack: Stack, provider: Provider
) -> None:
    w, _ = await minor(stack)
    national_id = w.national_id
    other_key = RSAKey.generate_key(2048, parameters={"kid": "idporten-1"})
    forged = jwt.encode(
        {"alg": "RS256", "kid": "idporten-1"},
        {"iss": IDPORTEN, "aud": AUDIENCE, "exp": int(time.time()) + 60, "pid": national_id},
        other_key,
    )

    answers = [
        await provider.exchange(w.skole, provider.id_token(national_id, aud="someone-else")),
        await provider.exchange(w.skole, provider.id_token(national_id, iss="https://evil.test")),
        await provider.exchange(
            w.skole, provider.id_token(national_id, exp=int(time.time()) - 600)
        ),
        await provider.exchange(w.skole, forged),
        await provider.exchange(w.skole, "not-a-token"),
    ]

    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_grant"
        assert national_id not in answer.text


async def test_the_exchange_is_offered_only_where_an_identity_provider_is_configured(
    stack: Stack, provider: Provider
) -> None:
    configured = await provider.http.get("/.well-known/oauth-authorization-server")
    default = await stack.http.get("/.well-known/oauth-authorization-server")

    assert EXCHANGE in configured.json()["grant_types_supported"]
    assert EXCHANGE not in default.json()["grant_types_supported"]
