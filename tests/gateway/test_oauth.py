"""The OAuth2 token endpoint, server metadata, and access-token verification."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from typer.testing import CliRunner

from gateway import store
from gateway.oauth import AuthConfigError, AuthRuntime, InvalidClientRegistration, register_client
from gateway.settings import GatewaySettings
from shared.clients import UpstreamProblem
from shared.db import make_engine, make_sessionmaker
from shared.internal_auth import CallerContext
from shared.keys import MissingKey
from shared.problems import ServiceUnavailable
from tests.gateway.conftest import (
    ISSUER,
    TOKEN_URL,
    RegisteredClient,
    public_jwk,
    token_form,
)

pytestmark = pytest.mark.anyio

Register = Callable[..., Any]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def gateway_signing_key(keys_dir: Path) -> tuple[str, ed25519.Ed25519PrivateKey]:
    """The gateway's current token-signing key, read from the key file the way an attacker
    who had it would: to show the checks other than the signature."""
    jwk = json.loads((keys_dir / "token-signing.jwks.json").read_text())["keys"][-1]
    return jwk["kid"], ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(jwk["d"]))


def sign_ed25519(header: dict[str, Any], claims: dict[str, Any], key: Any) -> str:
    """A compact JWS built with `cryptography` only, independent of the code under test."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(key.sign(signing_input.encode()))}"


def access_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": "school-sis",
        "client_id": "school-sis",
        "orgnr": "974760673",
        "agency_type": "skole",
        "scope": "participants:read",
        "kind": "system",
        "iat": now,
        "exp": now + 120,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return claims


async def get_token(
    http: httpx.AsyncClient, client: RegisteredClient, **extra: str
) -> httpx.Response:
    return await http.post("/oauth/token", data=token_form(client.assertion(), **extra))


async def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["type"] == "https://broen.no/problems/unauthorized"


# --- the token flow ----------------------------------------------------------------------


async def test_client_with_valid_assertion_gets_token_that_opens_protected_route(
    http: httpx.AsyncClient, register: Register
) -> None:
    client = await register()
    response = await get_token(http, client)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 300
    assert body["scope"] == "participants:read participants:write"

    whoami = await http.get(
        "/api/v1/whoami", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert whoami.status_code == 200, whoami.text
    caller = whoami.json()
    assert caller["kind"] == "system"
    assert caller["client_id"] == client.client_id
    assert caller["orgnr"] == "974760673"
    assert caller["agency_type"] == "skole"
    assert caller["scopes"] == ["participants:read", "participants:write"]


async def test_access_token_verifies_against_published_jwks_and_carries_system_claims(
    http: httpx.AsyncClient, register: Register
) -> None:
    client = await register()
    token = (await get_token(http, client)).json()["access_token"]
    jwks = (await http.get("/.well-known/jwks.json")).json()

    signing_input, _, signature = token.rpartition(".")
    header = json.loads(b64url_decode(signing_input.split(".")[0]))
    assert header["alg"] == "Ed25519"
    assert header["typ"] == "at+jwt"
    (jwk,) = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    public = ed25519.Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
    public.verify(b64url_decode(signature), signing_input.encode())  # raises if invalid

    claims = json.loads(b64url_decode(signing_input.split(".")[1]))
    assert claims["iss"] == claims["aud"] == ISSUER
    assert claims["sub"] == claims["client_id"] == client.client_id
    assert claims["kind"] == "system"
    assert claims["orgnr"] == "974760673" and claims["agency_type"] == "skole"
    assert claims["exp"] - claims["iat"] <= 300
    assert claims["jti"]


async def test_requested_scope_narrows_the_token(
    http: httpx.AsyncClient, register: Register
) -> None:
    client = await register()
    response = await get_token(http, client, scope="participants:read")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "participants:read"


async def test_assertion_with_issuer_as_audience_is_accepted(
    http: httpx.AsyncClient, register: Register
) -> None:
    client = await register()
    response = await http.post("/oauth/token", data=token_form(client.assertion(aud=ISSUER)))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "ES256"])
async def test_assertions_signed_with_rsa_and_ec_keys_are_accepted(
    http: httpx.AsyncClient, gateway_settings: GatewaySettings, algorithm: str
) -> None:
    if algorithm == "ES256":
        private_key: Any = ec.generate_private_key(ec.SECP256R1())
        jwk = public_jwk(private_key.public_key(), "ec-1", ECAlgorithm)
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = public_jwk(private_key.public_key(), "rsa-1", RSAAlgorithm)
    await register_client(
        gateway_settings,
        client_id="nav-integration",
        orgnr="889640782",
        agency_type="nav",
        scopes="participants:read",
        jwks={"keys": [jwk]},
    )
    now = int(time.time())
    claims = {
        "iss": "nav-integration",
        "sub": "nav-integration",
        "aud": TOKEN_URL,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    assertion = pyjwt.encode(claims, private_key, algorithm=algorithm, headers={"kid": jwk["kid"]})
    response = await http.post("/oauth/token", data=token_form(assertion))
    assert response.status_code == 200, response.text


# --- refused assertions --------------------------------------------------------------------


def _alg_none(client: RegisteredClient) -> str:
    header = b64url(json.dumps({"alg": "none", "kid": client.kid}).encode())
    claims = json.loads(b64url_decode(client.assertion().split(".")[1]))
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def _hs256_with_public_key(client: RegisteredClient) -> str:
    # The classic confusion: the public key (as published in the JWKS) used as an HMAC secret.
    secret = client.private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    claims = json.loads(b64url_decode(client.assertion().split(".")[1]))
    header = {"alg": "HS256", "kid": client.kid, "typ": "JWT"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _other_key(client: RegisteredClient) -> str:
    stranger = ed25519.Ed25519PrivateKey.generate()
    claims = json.loads(b64url_decode(client.assertion().split(".")[1]))
    return pyjwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": client.kid})


def _claims_of(client: RegisteredClient, **overrides: Any) -> dict[str, Any]:
    return json.loads(b64url_decode(client.assertion(**overrides).split(".")[1]))


def _signed_with_ed25519_alg_name(client: RegisteredClient, **overrides: Any) -> str:
    header = {"alg": "Ed25519", "kid": client.kid, "typ": "JWT"}
    return sign_ed25519(header, _claims_of(client, **overrides), client.private_key)


# kind -> (build the assertion from our client and another registered one, words of the reason)
BAD_ASSERTIONS: dict[str, tuple[Callable[[RegisteredClient, RegisteredClient], str], str]] = {
    "expired": (lambda c, o: c.assertion(exp=int(time.time()) - 120), "expired"),
    "exp_more_than_120s_ahead": (lambda c, o: c.assertion(exp=int(time.time()) + 600), "120"),
    "without_exp": (lambda c, o: c.assertion(exp=None), "exp"),
    "without_jti": (lambda c, o: c.assertion(jti=None), "jti"),
    "wrong_audience": (lambda c, o: c.assertion(aud="https://elsewhere.example/token"), "aud"),
    "issuer_not_the_client": (lambda c, o: c.assertion(iss=o.client_id), "Subject"),
    # The client is found by sub, so our key does not verify for the other client.
    "subject_another_client": (lambda c, o: c.assertion(sub=o.client_id), "not accepted"),
    "impersonating_another_client": (
        lambda c, o: c.assertion(iss=o.client_id, sub=o.client_id),
        "not accepted",
    ),
    "unknown_client": (lambda c, o: c.assertion(iss="no-such", sub="no-such"), "not exist"),
    "alg_none": (lambda c, o: _alg_none(c), "not accepted"),
    "hs256_with_public_key_as_secret": (lambda c, o: _hs256_with_public_key(c), "not accepted"),
    "signed_by_another_key": (lambda c, o: _other_key(c), "not accepted"),
    "not_a_jwt": (lambda c, o: "not-a-jwt", "Invalid"),
}


@pytest.mark.parametrize("kind", list(BAD_ASSERTIONS))
async def test_token_endpoint_refuses_bad_assertion_as_invalid_client(
    http: httpx.AsyncClient, register: Register, kind: str
) -> None:
    client, other = await register(), await register()
    build, reason = BAD_ASSERTIONS[kind]
    response = await http.post("/oauth/token", data=token_form(build(client, other)))
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] == "invalid_client"
    assert reason in response.json()["error_description"]
    assert "access_token" not in response.json()


async def test_assertion_with_ed25519_alg_name_is_accepted(
    http: httpx.AsyncClient, register: Register
) -> None:
    client = await register()
    assertion = _signed_with_ed25519_alg_name(client)
    response = await http.post("/oauth/token", data=token_form(assertion))
    assert response.status_code == 200, response.text


async def test_replayed_assertion_is_refused(http: httpx.AsyncClient, register: Register) -> None:
    client = await register()
    assertion = client.assertion()
    first = await http.post("/oauth/token", data=token_form(assertion))
    second = await http.post("/oauth/token", data=token_form(assertion))
    assert first.status_code == 200, first.text
    assert second.status_code in (400, 401)
    assert second.json()["error"] == "invalid_client"


async def test_concurrent_replay_gets_exactly_one_token(
    http: httpx.AsyncClient, register: Register
) -> None:
    client = await register()
    assertion = client.assertion()
    responses = await asyncio.gather(
        *(http.post("/oauth/token", data=token_form(assertion)) for _ in range(4))
    )
    assert sorted(response.status_code for response in responses) == [200, 400, 400, 400]


async def test_same_jti_from_two_clients_is_not_a_replay(
    http: httpx.AsyncClient, register: Register
) -> None:
    one, two = await register(), await register()
    jti = str(uuid.uuid4())
    for client in (one, two):
        response = await http.post("/oauth/token", data=token_form(client.assertion(jti=jti)))
        assert response.status_code == 200, response.text


async def test_requested_scope_outside_allowed_is_invalid_scope(
    http: httpx.AsyncClient, register: Register
) -> None:
    client = await register(scopes="participants:read")
    for scope in ("participants:write", "admin", "no-such-scope"):
        response = await get_token(http, client, scope=scope)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_scope"


async def test_token_endpoint_refuses_other_grant_types_and_bodies(
    http: httpx.AsyncClient, register: Register
) -> None:
    client = await register()
    password = await http.post(
        "/oauth/token", data={**token_form(client.assertion()), "grant_type": "password"}
    )
    assert password.json()["error"] == "unsupported_grant_type"
    as_json = await http.post("/oauth/token", json=token_form(client.assertion()))
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    repeated = await http.post(
        "/oauth/token",
        content=f"grant_type=client_credentials&grant_type=client_credentials"
        f"&client_assertion_type=x&client_assertion={client.assertion()}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert repeated.json()["error"] == "invalid_request"
    unauthenticated = await http.post("/oauth/token", data={"grant_type": "client_credentials"})
    assert unauthenticated.json()["error"] == "invalid_client"


async def test_expired_used_jtis_are_pruned_and_live_ones_kept(
    gateway_settings: GatewaySettings,
) -> None:
    engine = make_engine(gateway_settings.database_url)
    now = datetime.now(UTC)
    try:
        async with make_sessionmaker(engine).begin() as session:
            assert await store.remember_jti(
                session, client_id="c", jti="old", expires_at=now - timedelta(minutes=1)
            )
            assert await store.remember_jti(
                session, client_id="c", jti="live", expires_at=now + timedelta(minutes=1)
            )
            assert not await store.remember_jti(
                session, client_id="c", jti="live", expires_at=now + timedelta(minutes=1)
            )
            assert await store.prune_used_jtis(session, now=now) == 1
            assert not await store.remember_jti(
                session, client_id="c", jti="live", expires_at=now + timedelta(minutes=1)
            )
            assert await store.remember_jti(
                session, client_id="c", jti="old", expires_at=now + timedelta(minutes=1)
            )
    finally:
        await engine.dispose()


# --- registration ----------------------------------------------------------------------------


async def test_admin_scope_is_refused_at_registration(register: Register) -> None:
    with pytest.raises(InvalidClientRegistration, match="admin"):
        await register(scopes="participants:read admin")


async def test_registration_refuses_private_keys_and_keys_without_kid(
    gateway_settings: GatewaySettings,
) -> None:
    private_key = ed25519.Ed25519PrivateKey.generate()
    public = public_jwk(private_key.public_key(), "k1")
    private_bytes = private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    with_private_part = {**public, "d": b64url(private_bytes)}
    without_kid = {k: v for k, v in public.items() if k != "kid"}
    symmetric = {"kty": "oct", "kid": "s", "k": "c2VjcmV0"}
    for jwk in (with_private_part, without_kid, symmetric, {**public, "alg": "HS256"}):
        with pytest.raises(InvalidClientRegistration):
            await register_client(
                gateway_settings,
                client_id="bad-keys",
                orgnr="974760673",
                agency_type="skole",
                scopes="participants:read",
                jwks={"keys": [jwk]},
            )


# --- loading the runtime ---------------------------------------------------------------------


def test_runtime_refuses_to_load_without_token_keys(tmp_path: Path) -> None:
    settings = GatewaySettings(keys_dir=tmp_path, issuer=ISSUER)
    with pytest.raises(MissingKey, match="token-signing.jwks.json"):
        AuthRuntime.load(settings)


def test_runtime_refuses_long_token_lifetime_and_plain_http_issuer(keys_dir: Path) -> None:
    with pytest.raises(AuthConfigError, match="300"):
        AuthRuntime.load(
            GatewaySettings(keys_dir=keys_dir, issuer=ISSUER, access_token_lifetime_seconds=3600)
        )
    with pytest.raises(AuthConfigError, match="https"):
        AuthRuntime.load(GatewaySettings(keys_dir=keys_dir, issuer="http://gateway.example"))
    assert AuthRuntime.load(GatewaySettings(keys_dir=keys_dir, issuer="http://127.0.0.1:8000"))


# --- metadata and keys -------------------------------------------------------------------


async def test_server_metadata_describes_the_token_endpoint(http: httpx.AsyncClient) -> None:
    response = await http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["issuer"] == ISSUER
    assert metadata["token_endpoint"] == TOKEN_URL
    assert metadata["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert metadata["grant_types_supported"] == [
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ]
    assert metadata["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert "none" not in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert not any(
        alg.startswith("HS") for alg in metadata["token_endpoint_auth_signing_alg_values_supported"]
    )
    assert metadata["scopes_supported"] == [
        "participants:read",
        "participants:write",
        "events:write",
        "consents:read",
        "consents:write",
        "messages",
        "subscriptions",
        "audit:read",
        "admin",
    ]


async def test_jwks_publishes_public_keys_only(http: httpx.AsyncClient, keys_dir: Path) -> None:
    keys = (await http.get("/.well-known/jwks.json")).json()["keys"]
    assert keys
    private_members = {"d", "p", "q", "dp", "dq", "qi", "k"}
    for key in keys:
        assert not private_members & key.keys()
        assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and key["kid"]
    assert gateway_signing_key(keys_dir)[0] in {key["kid"] for key in keys}


async def test_openapi_documents_the_token_form(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    body = spec["paths"]["/oauth/token"]["post"]["requestBody"]["content"]
    fields = body["application/x-www-form-urlencoded"]["schema"]["properties"]
    assert {
        "grant_type",
        "client_assertion_type",
        "client_assertion",
        "assertion",
        "scope",
    } <= fields.keys()


# --- access tokens at protected routes -------------------------------------------------------


def _forged(keys_dir: Path, kind: str) -> str:
    kid, key = gateway_signing_key(keys_dir)
    header = {"alg": "Ed25519", "typ": "at+jwt", "kid": kid}
    now = int(time.time())
    if kind == "expired":
        return sign_ed25519(header, access_claims(iat=now - 600, exp=now - 300), key)
    if kind == "wrong_audience":
        return sign_ed25519(header, access_claims(aud="https://elsewhere.example"), key)
    if kind == "wrong_issuer":
        return sign_ed25519(header, access_claims(iss="https://elsewhere.example"), key)
    if kind == "unknown_kid":
        return sign_ed25519({**header, "kid": "tok-unknown"}, access_claims(), key)
    if kind == "signed_by_another_key":
        return sign_ed25519(header, access_claims(), ed25519.Ed25519PrivateKey.generate())
    if kind == "not_an_access_token_type":
        return sign_ed25519({**header, "typ": "broen-internal+jwt"}, access_claims(), key)
    if kind == "alg_none":
        body = f"{b64url(json.dumps({**header, 'alg': 'none'}).encode())}"
        return f"{body}.{b64url(json.dumps(access_claims()).encode())}."
    if kind == "hs256_with_public_key_bytes":
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return pyjwt.encode(
            access_claims(), public, algorithm="HS256", headers={"kid": kid, "typ": "at+jwt"}
        )
    if kind == "tampered_payload":
        token = sign_ed25519(header, access_claims(scope="participants:read"), key)
        head, _, signature = token.split(".")
        widened = access_claims(scope="participants:read audit:read")
        return f"{head}.{b64url(json.dumps(widened).encode())}.{signature}"
    raise AssertionError(kind)


FORGED = [
    "expired",
    "wrong_audience",
    "wrong_issuer",
    "unknown_kid",
    "signed_by_another_key",
    "not_an_access_token_type",
    "alg_none",
    "hs256_with_public_key_bytes",
    "tampered_payload",
]


async def test_validly_signed_control_token_is_accepted(
    http: httpx.AsyncClient, keys_dir: Path
) -> None:
    # Shows the forgeries below fail for the reason they name, not for the way they are built.
    kid, key = gateway_signing_key(keys_dir)
    token = sign_ed25519({"alg": "Ed25519", "typ": "at+jwt", "kid": kid}, access_claims(), key)
    response = await http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("kind", FORGED)
async def test_bad_access_token_is_refused_with_401_problem(
    http: httpx.AsyncClient, keys_dir: Path, kind: str
) -> None:
    token = _forged(keys_dir, kind)
    response = await http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    await assert_invalid_token(response)


async def test_garbage_and_non_bearer_credentials_are_refused(http: httpx.AsyncClient) -> None:
    garbage = await http.get("/api/v1/whoami", headers={"Authorization": "Bearer abc.def"})
    await assert_invalid_token(garbage)
    basic = await http.get("/api/v1/whoami", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401
    assert basic.headers["www-authenticate"].startswith("Bearer")


async def test_missing_authorization_header_gets_bare_bearer_challenge(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/api/v1/whoami")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"


async def test_token_without_required_scope_gets_403_problem(
    http: httpx.AsyncClient, register: Register
) -> None:
    client = await register(scopes="participants:read")
    token = (await get_token(http, client)).json()["access_token"]
    response = await http.get("/api/v1/audit-probe", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://broen.no/problems/insufficient-scope"
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_keygen_writes_private_key_0600_and_prints_public_jwks(tmp_path: Path) -> None:
    from broen_cli.client import client_app

    out = tmp_path / "school.private.jwk.json"
    arguments = ["keygen", "--out", str(out), "--alg", "ES256", "--json"]
    result = CliRunner().invoke(client_app, arguments)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert out.stat().st_mode & 0o777 == 0o600
    assert "d" in json.loads(out.read_text())
    (public,) = document["jwks"]["keys"]
    assert "d" not in public and public["kid"] == document["kid"]


def test_cli_add_registers_client_and_refuses_admin_scope(
    tmp_path: Path, gateway_settings: GatewaySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from broen_cli.client import client_app

    monkeypatch.setenv("BROEN_GATEWAY_DATABASE_URL", gateway_settings.database_url)
    runner = CliRunner()
    key = tmp_path / "k.json"
    keygen = runner.invoke(client_app, ["keygen", "--out", str(key), "--json"])
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(json.loads(keygen.stdout)["jwks"]))
    base = [
        "add",
        "--client-id",
        "sis-1",
        "--org",
        "974760673",
        "--agency-type",
        "skole",
        "--jwks-file",
        str(jwks_file),
    ]

    refused = runner.invoke(client_app, [*base, "--scope", "participants:read admin"])
    assert refused.exit_code == 1
    assert "admin" in refused.stderr and "Traceback" not in refused.output

    added = runner.invoke(client_app, [*base, "--scope", "participants:read", "--json"])
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["scopes"] == ["participants:read"]

    private_jwks = tmp_path / "private.json"
    private_jwks.write_text(json.dumps({"keys": [json.loads(key.read_text())]}))
    leaked = runner.invoke(
        client_app, [*base[:-1], str(private_jwks), "--scope", "participants:read"]
    )
    assert leaked.exit_code == 1 and "private" in leaked.stderr


def test_cli_add_without_agency_type_refuses_unknown_organisation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: Callable[[str], str]
) -> None:
    from broen_cli.client import client_app

    # A real, empty directory: the organisation is looked up there and not found.
    monkeypatch.setenv("BROEN_PARTICIPANT_DATABASE_URL", database_url("participant"))
    private_key = ed25519.Ed25519PrivateKey.generate()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [public_jwk(private_key.public_key(), "k1")]}))
    arguments = ["add", "--client-id", "sis-2", "--org", "999999999", "--scope", "messages"]
    result = CliRunner().invoke(client_app, [*arguments, "--jwks-file", str(jwks_file)])
    assert result.exit_code == 1
    assert "unknown organisation" in result.stderr


# --- staff and citizen tokens ------------------------------------------------------------------

STAFF_ID = "6f1c1a52-5d0e-4b8e-9a57-2f7c3f0d9b11"
UNIT_ID = "0b0f5a3e-8c4d-4f57-9e0e-6c1f2b3a4d5e"
PARTICIPANT_ID = "d3b07384-d9a7-4f3b-8a1c-2e5f6a7b8c9d"


def staff_claims(**overrides: Any) -> dict[str, Any]:
    claims = access_claims(
        kind="staff",
        sub=STAFF_ID,
        staff_id=STAFF_ID,
        unit_id=UNIT_ID,
        roles=["kontaktlaerer"],
        skjermet_authorised=False,
    )
    claims.update(overrides)
    return claims


def citizen_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": PARTICIPANT_ID,
        "participant_id": PARTICIPANT_ID,
        "kind": "citizen",
        "scope": "",
        "iat": now,
        "exp": now + 120,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return claims


def _signed(keys_dir: Path, claims: dict[str, Any]) -> str:
    kid, key = gateway_signing_key(keys_dir)
    return sign_ed25519({"alg": "Ed25519", "typ": "at+jwt", "kid": kid}, claims, key)


async def test_issued_staff_and_citizen_tokens_verify_as_their_callers(
    gateway_settings: GatewaySettings,
) -> None:
    from services.participant.schemas import StaffRead

    tokens = AuthRuntime.load(gateway_settings).tokens
    staff = StaffRead(
        id=uuid.UUID(STAFF_ID),
        orgnr="974760673",
        unit_id=uuid.UUID(UNIT_ID),
        name="Vera",
        roles=["veileder", "auditor"],
        skjermet_authorised=True,
    )
    issued = tokens.issue_staff_token(
        client_id="nav-sys", agency_type="nav", staff=staff, scopes=["participants:read"]
    )
    caller = tokens.verify(issued["access_token"])
    assert caller.model_dump() == {
        "kind": "staff",
        "client_id": "nav-sys",
        "orgnr": "974760673",
        "agency_type": "nav",
        "scopes": ("participants:read",),
        "staff_id": STAFF_ID,
        "unit_id": UNIT_ID,
        "roles": ("veileder", "auditor"),
        "participant_id": None,
        "acting_as": None,
        "skjermet_authorised": True,
    }
    hash(caller)  # the internal token cache keys on it

    citizen = tokens.verify(
        tokens.issue_citizen_token(participant_id=uuid.UUID(PARTICIPANT_ID))["access_token"]
    )
    assert citizen == CallerContext(
        kind="citizen", participant_id=PARTICIPANT_ID, acting_as="participant"
    )
    guardian = tokens.verify(
        tokens.issue_citizen_token(
            participant_id=uuid.UUID(PARTICIPANT_ID), acting_as="guardian", guardian="g-1"
        )["access_token"]
    )
    assert guardian == CallerContext(
        kind="citizen", participant_id=PARTICIPANT_ID, acting_as="guardian"
    )


async def test_staff_token_opens_an_organisation_route_and_citizen_token_does_not(
    http: httpx.AsyncClient, keys_dir: Path
) -> None:
    staff = await http.get(
        "/api/v1/whoami",
        headers={"Authorization": f"Bearer {_signed(keys_dir, staff_claims())}"},
    )
    citizen = await http.get(
        "/api/v1/whoami",
        headers={"Authorization": f"Bearer {_signed(keys_dir, citizen_claims())}"},
    )

    assert staff.status_code == 200, staff.text
    assert staff.json()["kind"] == "staff" and staff.json()["roles"] == ["kontaktlaerer"]
    assert citizen.status_code == 403
    assert citizen.headers["content-type"] == "application/problem+json"
    assert citizen.json()["type"] == "https://broen.no/problems/citizen-route-only"


async def test_citizen_token_reaches_me_routes_but_never_an_organisation_scope(
    http: httpx.AsyncClient, keys_dir: Path
) -> None:
    citizen = {"Authorization": f"Bearer {_signed(keys_dir, citizen_claims())}"}
    staff = {"Authorization": f"Bearer {_signed(keys_dir, staff_claims())}"}

    me = await http.get("/api/v1/me/whoami", headers=citizen)
    scoped = await http.get("/api/v1/me/scoped-probe", headers=citizen)
    # Control: the probe opens for a caller holding the scope.
    staff_scoped = await http.get("/api/v1/me/scoped-probe", headers=staff)

    assert me.status_code == 200, me.text
    assert me.json()["kind"] == "citizen" and me.json()["participant_id"] == PARTICIPANT_ID
    assert scoped.status_code == 403
    assert scoped.json()["type"] == "https://broen.no/problems/insufficient-scope"
    assert staff_scoped.status_code == 200


# Built when a test runs, so their exp is fresh however late it runs.
MALFORMED_CALLERS: dict[str, Callable[[], dict[str, Any]]] = {
    "unknown_kind": lambda: staff_claims(kind="operator"),
    "staff_sub_not_staff_id": lambda: staff_claims(sub=str(uuid.uuid4())),
    "staff_id_not_a_uuid": lambda: staff_claims(sub="vera", staff_id="vera"),
    "staff_role_outside_vocabulary": lambda: staff_claims(roles=["rektor"]),
    "staff_without_roles": lambda: staff_claims(roles=[]),
    "staff_roles_not_a_list": lambda: staff_claims(roles="kontaktlaerer"),
    "staff_roles_not_strings": lambda: staff_claims(roles=[{"role": "kontaktlaerer"}]),
    "staff_without_unit": lambda: {k: v for k, v in staff_claims().items() if k != "unit_id"},
    "staff_skjermet_not_a_bool": lambda: staff_claims(skjermet_authorised="yes"),
    "citizen_with_an_organisation_scope": lambda: citizen_claims(scope="participants:read"),
    "citizen_with_organisation_claims": lambda: citizen_claims(orgnr="974760673"),
    "citizen_sub_not_participant": lambda: citizen_claims(sub=str(uuid.uuid4())),
    "system_with_numeric_orgnr": lambda: access_claims(orgnr=974760673),
}


@pytest.mark.parametrize("case", list(MALFORMED_CALLERS))
async def test_validly_signed_token_with_malformed_caller_claims_is_refused(
    http: httpx.AsyncClient, keys_dir: Path, case: str
) -> None:
    token = _signed(keys_dir, MALFORMED_CALLERS[case]())
    response = await http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    await assert_invalid_token(response)


JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class _FakeDirectory:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[tuple[CallerContext, uuid.UUID]] = []

    async def read_staff(self, caller: CallerContext, staff_id: uuid.UUID) -> Any:
        self.asked.append((caller, staff_id))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _staff_grant_form(client: RegisteredClient, subject: str = STAFF_ID) -> dict[str, str]:
    return {
        **token_form(client.assertion()),
        "grant_type": JWT_BEARER,
        "assertion": client.assertion(sub=subject),
    }


@pytest.mark.parametrize(
    "answer",
    [
        ServiceUnavailable("down"),
        UpstreamProblem(422, {"detail": "no"}),
        ValueError("not the contract"),
        None,
    ],
    ids=["unavailable", "unexpected_4xx", "malformed_answer", "no_directory"],
)
async def test_staff_grant_answers_503_when_the_directory_cannot_answer(
    gateway_app: FastAPI, http: httpx.AsyncClient, register: Register, answer: Any
) -> None:
    if answer is not None:
        gateway_app.state.participant_client = _FakeDirectory(answer)
    client = await register()

    response = await http.post("/oauth/token", data=_staff_grant_form(client))

    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "access_token" not in response.json()


async def test_staff_grant_reads_the_directory_as_the_authenticated_client(
    gateway_app: FastAPI, http: httpx.AsyncClient, register: Register
) -> None:
    from services.participant.schemas import StaffRead

    staff = StaffRead(
        id=uuid.UUID(STAFF_ID),
        orgnr="974760673",
        unit_id=uuid.UUID(UNIT_ID),
        name="Vera",
        roles=["kontaktlaerer"],
        skjermet_authorised=False,
    )
    directory = _FakeDirectory(staff)
    gateway_app.state.participant_client = directory
    client = await register()

    response = await http.post("/oauth/token", data=_staff_grant_form(client))

    assert response.status_code == 200, response.text
    ((caller, staff_id),) = directory.asked
    assert staff_id == uuid.UUID(STAFF_ID)
    assert (caller.client_id, caller.orgnr) == (client.client_id, "974760673")
