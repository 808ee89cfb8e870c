"""Staff tokens (the JWT-bearer grant, RFC 7523 §2.1, with private_key_jwt client
authentication) and citizen tokens, through the whole stack on SQLite and PostgreSQL.
Every assertion here is signed with PyJWT, independent of the server's JOSE library."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from sqlalchemy import func, select

from gateway.app import create_app
from gateway.models import UsedAssertion
from gateway.settings import GatewaySettings
from services.participant.schemas import StaffRead, UnitRead
from tests.system.conftest import ISSUER, Organisation, Stack

pytestmark = pytest.mark.anyio

SKOLE = "310123455"
NAV = "889640782"
KARI = "15080551212"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
BROEN = Path(sys.executable).parent / "broen"


def staff_assertion(organisation: Organisation, subject: Any, **overrides: Any) -> str:
    """The grant's assertion: iss the client, sub the staff member; overrides replace claims
    (None drops one), `key` signs with another key."""
    key = overrides.pop("key", organisation.private_key)
    now = int(time.time())
    claims = {
        "iss": organisation.client_id,
        "sub": str(subject),
        "aud": ISSUER,
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
        **overrides,
    }
    claims = {name: value for name, value in claims.items() if value is not None}
    return pyjwt.encode(claims, key, algorithm="ES256", headers={"kid": organisation.kid})


def staff_form(
    stack: Stack, organisation: Organisation, assertion: str, **extra: str
) -> dict[str, str]:
    return {
        "grant_type": JWT_BEARER,
        "assertion": assertion,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": stack.assertion(organisation),
        **extra,
    }


async def school_with_teacher(stack: Stack) -> tuple[Organisation, UnitRead, StaffRead]:
    skole = await stack.add_organisation(
        SKOLE, "skole", scopes=["participants:read", "participants:write", "messages"]
    )
    unit = await stack.add_unit(skole, name="Vg1 studiespesialisering")
    teacher = await stack.add_staff(skole, unit, roles=("kontaktlaerer", "faglaerer"))
    return skole, unit, teacher


async def used_assertions(stack: Stack) -> int:
    async with stack.gateway.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(UsedAssertion)) or 0)


async def test_staff_member_gets_a_token_with_their_organisation_unit_and_roles(
    stack: Stack,
) -> None:
    skole, unit, teacher = await school_with_teacher(stack)

    response = await stack.http.post(
        "/oauth/token", data=staff_form(stack, skole, staff_assertion(skole, teacher.id))
    )

    assert response.status_code == 200, response.text
    issued = response.json()
    assert issued["token_type"] == "Bearer"
    assert issued["scope"] == "participants:read participants:write messages"
    token = issued["access_token"]
    assert pyjwt.get_unverified_header(token)["typ"] == "at+jwt"
    claims = pyjwt.decode(token, options={"verify_signature": False})
    assert claims["kind"] == "staff"
    assert claims["sub"] == claims["staff_id"] == str(teacher.id)
    assert claims["client_id"] == skole.client_id
    assert (claims["orgnr"], claims["agency_type"]) == (SKOLE, "skole")
    assert claims["unit_id"] == str(unit.id)
    assert claims["roles"] == ["kontaktlaerer", "faglaerer"]
    assert claims["skjermet_authorised"] is False
    assert claims["iss"] == claims["aud"] == ISSUER
    assert 0 < claims["exp"] - claims["iat"] <= 300 and claims["jti"]

    caller = stack.gateway.state.auth.tokens.verify(token)
    assert caller.kind == "staff" and caller.staff_id == str(teacher.id)
    assert caller.unit_id == str(unit.id) and caller.roles == ("kontaktlaerer", "faglaerer")
    assert caller.orgnr == SKOLE and caller.client_id == skole.client_id

    units = await stack.http.get("/api/v1/units", headers={"Authorization": f"Bearer {token}"})
    assert units.status_code == 200, units.text
    assert [u["id"] for u in units.json()["items"]] == [str(unit.id)]


async def test_staff_token_scope_is_a_subset_of_the_clients_scopes(stack: Stack) -> None:
    skole, _, teacher = await school_with_teacher(stack)

    narrowed = await stack.http.post(
        "/oauth/token",
        data=staff_form(
            stack, skole, staff_assertion(skole, teacher.id), scope="participants:read"
        ),
    )
    widened = await stack.http.post(
        "/oauth/token",
        data=staff_form(stack, skole, staff_assertion(skole, teacher.id), scope="consents:read"),
    )

    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "participants:read"
    assert widened.status_code == 400 and widened.json()["error"] == "invalid_scope"
    assert "access_token" not in widened.json()


async def test_skjermet_authorisation_is_carried_into_the_token(stack: Stack) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    office = await stack.add_unit(nav, name="NAV Demo", kind="nav_kontor")
    veileder = await stack.add_staff(nav, office, roles=("veileder",), skjermet_authorised=True)

    response = await stack.http.post(
        "/oauth/token", data=staff_form(stack, nav, staff_assertion(nav, veileder.id))
    )

    assert response.status_code == 200, response.text
    caller = stack.gateway.state.auth.tokens.verify(response.json()["access_token"])
    assert caller.skjermet_authorised is True and caller.agency_type == "nav"


REFUSALS = {
    # name: (what the form is, the OAuth error)
    "staff_of_another_organisation": "invalid_grant",
    "unknown_staff_id": "invalid_grant",
    "sub_not_a_uuid": "invalid_grant",
    "assertion_signed_by_a_key_not_the_clients": "invalid_grant",
    "assertion_issued_by_another_client": "invalid_grant",
    "assertion_for_another_audience": "invalid_grant",
    "assertion_expiring_too_late": "invalid_grant",
    "assertion_without_jti": "invalid_grant",
    "no_assertion": "invalid_request",
    "no_client_authentication": "invalid_client",
    "client_assertion_signed_by_a_foreign_key": "invalid_client",
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_bad_staff_token_requests_are_refused_and_nothing_is_issued(
    stack: Stack, case: str
) -> None:
    skole, _, teacher = await school_with_teacher(stack)
    nav = await stack.add_organisation(NAV, "nav")
    office = await stack.add_unit(nav, name="NAV Demo", kind="nav_kontor")
    veileder = await stack.add_staff(nav, office, roles=("veileder",))
    foreign_key = generate_private_key(SECP256R1())
    now = int(time.time())
    form = staff_form(stack, skole, staff_assertion(skole, teacher.id))
    if case == "staff_of_another_organisation":
        form["assertion"] = staff_assertion(skole, veileder.id)
    elif case == "unknown_staff_id":
        form["assertion"] = staff_assertion(skole, uuid.uuid4())
    elif case == "sub_not_a_uuid":
        form["assertion"] = staff_assertion(skole, "kari.lærer")
    elif case == "assertion_signed_by_a_key_not_the_clients":
        form["assertion"] = staff_assertion(skole, teacher.id, key=foreign_key)
    elif case == "assertion_issued_by_another_client":
        form["assertion"] = staff_assertion(skole, teacher.id, iss=nav.client_id)
    elif case == "assertion_for_another_audience":
        form["assertion"] = staff_assertion(skole, teacher.id, aud="https://elsewhere.example")
    elif case == "assertion_expiring_too_late":
        form["assertion"] = staff_assertion(skole, teacher.id, exp=now + 3600)
    elif case == "assertion_without_jti":
        form["assertion"] = staff_assertion(skole, teacher.id, jti=None)
    elif case == "no_assertion":
        del form["assertion"]
    elif case == "no_client_authentication":
        del form["client_assertion"], form["client_assertion_type"]
    elif case == "client_assertion_signed_by_a_foreign_key":
        form["client_assertion"] = pyjwt.encode(
            pyjwt.decode(form["client_assertion"], options={"verify_signature": False}),
            foreign_key,
            algorithm="ES256",
            headers={"kid": skole.kid},
        )

    response = await stack.http.post("/oauth/token", data=form)

    assert response.status_code in (400, 401), response.text
    body = response.json()
    assert body["error"] == REFUSALS[case]
    assert "access_token" not in body
    assert str(veileder.id) not in response.text and NAV not in response.text


async def test_unknown_staff_and_another_organisations_staff_get_the_same_answer(
    stack: Stack,
) -> None:
    skole, _, _ = await school_with_teacher(stack)
    nav = await stack.add_organisation(NAV, "nav")
    office = await stack.add_unit(nav, name="NAV Demo", kind="nav_kontor")
    veileder = await stack.add_staff(nav, office, roles=("veileder",))

    other = await stack.http.post(
        "/oauth/token", data=staff_form(stack, skole, staff_assertion(skole, veileder.id))
    )
    unknown = await stack.http.post(
        "/oauth/token", data=staff_form(stack, skole, staff_assertion(skole, uuid.uuid4()))
    )

    assert (other.status_code, other.json()) == (unknown.status_code, unknown.json())


async def test_a_replayed_staff_assertion_is_refused(stack: Stack) -> None:
    skole, _, teacher = await school_with_teacher(stack)
    assertion = staff_assertion(skole, teacher.id)

    first = await stack.http.post("/oauth/token", data=staff_form(stack, skole, assertion))
    # A fresh client assertion, the same grant assertion.
    replay = await stack.http.post("/oauth/token", data=staff_form(stack, skole, assertion))

    assert first.status_code == 200, first.text
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert "access_token" not in replay.json()


async def test_the_client_assertion_cannot_double_as_the_grant_assertion(stack: Stack) -> None:
    skole, _, _ = await school_with_teacher(stack)
    client_assertion = stack.assertion(skole)
    form = {
        "grant_type": JWT_BEARER,
        "assertion": client_assertion,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": client_assertion,
    }

    response = await stack.http.post("/oauth/token", data=form)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_staff_directory_down_gives_a_503_problem(keys_dir: Path, stack: Stack) -> None:
    skole, _, teacher = await school_with_teacher(stack)
    # A second gateway on the same database whose participant service is not listening.
    settings = GatewaySettings(
        database_url=stack.gateway_settings.database_url,
        keys_dir=keys_dir,
        issuer=ISSUER,
        participant_url="http://127.0.0.1:9",
        upstream_connect_timeout_seconds=0.5,
    )
    gateway = create_app(settings)
    async with gateway.router.lifespan_context(gateway):
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            response = await http.post(
                "/oauth/token", data=staff_form(stack, skole, staff_assertion(skole, teacher.id))
            )

    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
    assert "access_token" not in response.json()


async def test_server_metadata_advertises_the_jwt_bearer_grant(stack: Stack) -> None:
    metadata = (await stack.http.get("/.well-known/oauth-authorization-server")).json()

    assert JWT_BEARER in metadata["grant_types_supported"]


# --- citizen tokens -----------------------------------------------------------------------


def _concrete(path: str) -> str:
    """The path with every parameter filled in: an orgnr where one is asked, else an id."""
    path = path.replace("{orgnr}", SKOLE)
    return re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)


async def test_a_citizen_token_is_refused_by_every_organisation_route(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    registered = await stack.http.post(
        "/api/v1/participants",
        json={"national_id": KARI, "name": "Kari Nordmann", "source_system": "test"},
        headers=await stack.as_org(skole),
    )
    assert registered.status_code in (200, 201), registered.text
    participant_id = uuid.UUID(registered.json()["id"])
    token = stack.gateway.state.auth.tokens.issue_citizen_token(participant_id=participant_id)
    caller = stack.gateway.state.auth.tokens.verify(token["access_token"])
    assert caller.kind == "citizen" and caller.participant_id == str(participant_id)
    assert caller.scopes == () and caller.orgnr is None
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    document = (await stack.http.get("/openapi.json")).json()
    routes = [
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if path.startswith("/api/v1/") and not path.startswith("/api/v1/me/")
        for method in operations
    ]
    assert ("GET", "/api/v1/participants/{participant_id}") in routes
    for method, path in routes:
        concrete = _concrete(path.replace("{participant_id}", str(participant_id)))
        body = None if method in ("GET", "DELETE") else {}
        response = await stack.http.request(method, concrete, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"


# --- the CLI ------------------------------------------------------------------------------


def _broen(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BROEN), *arguments],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dev_token_for_staff_is_refused_outside_dev_mode(tmp_path: Path) -> None:
    result = _broen(
        "dev", "token", "--staff", str(uuid.uuid4()), env={"BROEN_KEYS_DIR": str(tmp_path)}
    )

    assert result.returncode == 1
    assert "dev mode" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


async def test_dev_token_mints_a_staff_token_the_gateway_accepts(
    stack: Stack, keys_dir: Path, db_backend: str
) -> None:
    _, unit, teacher = await school_with_teacher(stack)
    env = {
        "BROEN_ENV": "dev",
        "BROEN_KEYS_DIR": str(keys_dir),
        "BROEN_PARTICIPANT_DATABASE_URL": stack.participant_settings.database_url,
        "BROEN_GATEWAY_ISSUER": ISSUER,
    }

    result = await _broen_in_thread("dev", "token", "--staff", str(teacher.id), env=env)

    if db_backend != "sqlite":
        # Dev mode, token minting included, runs only on the embedded SQLite databases.
        assert result.returncode == 1, result.stdout
        assert "SQLite" in result.stderr and "Traceback" not in result.stderr
        return
    assert result.returncode == 0, result.stderr
    caller = stack.gateway.state.auth.tokens.verify(result.stdout.strip())
    assert caller.kind == "staff" and caller.staff_id == str(teacher.id)
    assert caller.orgnr == SKOLE and caller.agency_type == "skole"
    assert caller.unit_id == str(unit.id)
    assert caller.roles == ("kontaktlaerer", "faglaerer")
    assert set(caller.scopes) == {
        "participants:read",
        "participants:write",
        "messages",
        "consents:read",
    }

    as_json = await _broen_in_thread(
        "dev",
        "token",
        "--staff",
        str(teacher.id),
        "--scope",
        "participants:read",
        "--json",
        env=env,
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["scope"] == "participants:read"


async def test_dev_token_refuses_unknown_staff_and_participants_cleanly(
    stack: Stack, keys_dir: Path, db_backend: str
) -> None:
    if db_backend != "sqlite":
        pytest.skip("dev mode runs only on SQLite (the refusal is tested above)")
    env = {
        "BROEN_ENV": "dev",
        "BROEN_KEYS_DIR": str(keys_dir),
        "BROEN_PARTICIPANT_DATABASE_URL": stack.participant_settings.database_url,
    }

    staff = await _broen_in_thread("dev", "token", "--staff", str(uuid.uuid4()), env=env)
    citizen = await _broen_in_thread("dev", "token", "--citizen", str(uuid.uuid4()), env=env)
    both = await _broen_in_thread(
        "dev", "token", "--citizen", str(uuid.uuid4()), "--client-id", "demo-skole", env=env
    )
    not_an_id = await _broen_in_thread("dev", "token", "--staff", "kari", env=env)

    for result, words in (
        (staff, "no staff member"),
        (citizen, "no participant"),
        (both, "exactly one"),
        (not_an_id, "UUID"),
    ):
        assert result.returncode == 1, result.stdout
        assert words in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""


async def test_dev_token_mints_a_citizen_token_for_a_known_participant(
    stack: Stack, keys_dir: Path, db_backend: str
) -> None:
    if db_backend != "sqlite":
        pytest.skip("dev mode runs only on SQLite")
    skole = await stack.add_organisation(SKOLE, "skole")
    registered = await stack.http.post(
        "/api/v1/participants",
        json={"national_id": KARI, "name": "Kari Nordmann", "source_system": "test"},
        headers=await stack.as_org(skole),
    )
    participant_id = registered.json()["id"]
    env = {
        "BROEN_ENV": "dev",
        "BROEN_KEYS_DIR": str(keys_dir),
        "BROEN_PARTICIPANT_DATABASE_URL": stack.participant_settings.database_url,
        "BROEN_GATEWAY_ISSUER": ISSUER,
    }

    result = await _broen_in_thread("dev", "token", "--citizen", participant_id, env=env)

    assert result.returncode == 0, result.stderr
    caller = stack.gateway.state.auth.tokens.verify(result.stdout.strip())
    assert caller.kind == "citizen" and caller.participant_id == participant_id


async def _broen_in_thread(
    *arguments: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    # The subprocess reads the same database the stack holds open; run it off the event loop.
    return await anyio.to_thread.run_sync(lambda: _broen(*arguments, env=env))
