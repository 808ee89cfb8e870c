"""Guardians: recorded with their source, acting for a minor under /api/v1/me/... until
the 18th birthday, and kept out of a kode 6 minor's access log. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.clients import GATEWAY_ITSELF
from services.participant.schemas import CitizenIdentity
from tests.system.conftest import ISSUER, Stack
from tests.system.test_consents import national_id_born, request_body
from tests.system.test_staff_tokens import _broen_in_thread
from tests.system.world import World, world

pytestmark = pytest.mark.anyio

GUARDIAN = national_id_born(date(1970, 1, 1))  # a synthetic adult


async def minor(stack: Stack, **values: object) -> tuple[World, date]:
    today = datetime.now(UTC).date()
    born = date(today.year - 15, 1, 1)
    return await world(stack, national_id=national_id_born(born), **values), born


async def record_guardian(stack: Stack, w: World, national_id: str = GUARDIAN) -> dict[str, object]:
    response = await stack.http.post(
        f"{w.url}/guardians",
        json={"national_id": national_id, "source": "folkeregisteret"},
        headers=await stack.as_org(w.nav),
    )
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def as_guardian(stack: Stack, w: World) -> dict[str, str]:
    issued = stack.gateway.state.auth.tokens.issue_citizen_token(
        participant_id=w.participant, acting_as="guardian", guardian="test-guardian"
    )
    return {"Authorization": f"Bearer {issued['access_token']}"}


async def test_a_guardian_consents_for_a_fifteen_year_old_until_the_18th_birthday(
    stack: Stack,
) -> None:
    w, born = await minor(stack)
    recorded = await record_guardian(stack, w)
    again = await record_guardian(stack, w)
    asked = await stack.http.post(
        "/api/v1/consent-requests", json=request_body(w), headers=await stack.as_org(w.skole)
    )

    pending = await stack.http.get("/api/v1/me/consent-requests", headers=as_guardian(stack, w))
    accepted = await stack.http.post(
        f"/api/v1/me/consent-requests/{asked.json()['id']}/accept", headers=as_guardian(stack, w)
    )
    read = await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher))

    assert recorded["valid_to"] == again["valid_to"]
    assert str(recorded["valid_to"]).startswith(f"{born.year + 18}-01-01")
    assert GUARDIAN not in json.dumps(recorded)
    assert [r["id"] for r in pending.json()["items"]] == [asked.json()["id"]]
    assert accepted.status_code == 201, accepted.text
    consent = accepted.json()
    assert (consent["grantor"], consent["grantor_relation"]) == ("guardian", "guardian")
    assert consent["valid_to"].startswith(f"{born.year + 18}-01-01")
    assert consent["history"][0]["actor"] == "guardian"
    assert read.json()["email"] == "kari@nav.example"
    async with stack.participant.state.engine.connect() as connection:
        stored = repr((await connection.execute(text("SELECT * FROM guardianships"))).all())
    assert GUARDIAN not in stored


async def test_a_citizen_is_identified_by_national_id_through_the_blind_index(
    stack: Stack,
) -> None:
    w, _ = await minor(stack)
    await record_guardian(stack, w)
    upstream = stack.gateway.state.participant_client.upstream

    async def identify(national_id: str) -> CitizenIdentity:
        answer, _ = await upstream.fetch(
            CitizenIdentity,
            "POST",
            "/internal/v1/citizens/identify",
            GATEWAY_ITSELF,
            content=json.dumps({"national_id": national_id}).encode(),
        )
        return answer

    guardian = await identify(GUARDIAN)
    stranger = await identify("15080551212")

    assert guardian.participant_id is None
    assert [str(ward) for ward in guardian.wards] == [w.participant]
    assert stranger.participant_id is None and stranger.wards == []


async def test_an_adult_has_no_guardian(stack: Stack) -> None:
    w = await world(stack)

    response = await stack.http.post(
        f"{w.url}/guardians",
        json={"national_id": GUARDIAN, "source": "staff"},
        headers=await stack.as_org(w.nav),
    )

    assert response.status_code == 422
    assert response.json()["type"].endswith("/no-guardian-for-adults")
    assert GUARDIAN not in response.text


async def test_a_guardian_gets_no_access_log_for_a_minor_with_strengt_fortrolig_adresse(
    stack: Stack,
) -> None:
    w, _ = await minor(stack, adressebeskyttelse="strengt_fortrolig", address=None)
    await record_guardian(stack, w)
    # Someone at the school reads about the minor: an entry in the log.
    assert (
        await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher))
    ).status_code == 200

    own = await stack.http.get("/api/v1/me/access-log", headers=stack.as_citizen(w.participant))
    guardians = await stack.http.get("/api/v1/me/access-log", headers=as_guardian(stack, w))

    assert own.json()["items"], "the minor sees who read about them"
    assert guardians.status_code == 200 and guardians.json()["items"] == []


async def test_dev_tokens_by_national_id_act_as_the_participant_or_as_their_guardian(
    stack: Stack, keys_dir: Path, db_backend: str
) -> None:
    if db_backend != "sqlite":
        pytest.skip("dev mode runs only on SQLite")
    w, _ = await minor(stack)
    await record_guardian(stack, w)
    env = {
        "BROEN_ENV": "dev",
        "BROEN_KEYS_DIR": str(keys_dir),
        "BROEN_PARTICIPANT_DATABASE_URL": stack.participant_settings.database_url,
        "BROEN_GATEWAY_ISSUER": ISSUER,
    }

    guardian = await _broen_in_thread(
        "dev", "token", "--national-id", GUARDIAN, "--for", w.participant, env=env
    )
    not_a_ward = await _broen_in_thread(
        "dev", "token", "--national-id", GUARDIAN, "--for", str(uuid.uuid4()), env=env
    )
    nobody = await _broen_in_thread("dev", "token", "--national-id", GUARDIAN, env=env)

    assert guardian.returncode == 0, guardian.stderr
    caller = stack.gateway.state.auth.tokens.verify(guardian.stdout.strip())
    assert (caller.participant_id, caller.acting_as) == (w.participant, "guardian")
    assert GUARDIAN not in guardian.stdout + guardian.stderr
    assert not_a_ward.returncode == nobody.returncode == 1
    assert "not a current guardian" in not_a_ward.stderr
    assert "no participant" in nobody.stderr and "Traceback" not in nobody.stderr
