"""Consents through the whole stack and the consent service: asking, answering, recording,
withdrawing, and the gateway's decisions reading them. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import select
from stdnum.no import fodselsnummer
from typer.testing import CliRunner

from broen_cli.main import app as cli
from gateway.app import create_app
from gateway.policy import SHIPPED_POLICY
from services.consent.models import LegalBasisChange, OutboxEvent
from tests.system.conftest import Stack
from tests.system.world import NAV, SKOLE, World, entries, shown, world

pytestmark = pytest.mark.anyio

JUSTIFICATION = "Vi ber om å få se kontaktopplysningene NAV har, så vi når deg ved fravær."


def national_id_born(born: date) -> str:
    """A synthetic fødselsnummer with valid check digits for someone born on `born`."""
    for individual in range(500, 1000):
        digits = f"{born:%d%m%y}{individual:03d}"
        for check in range(100):
            candidate = f"{digits}{check:02d}"
            if fodselsnummer.is_valid(candidate):
                return candidate
    raise AssertionError("no valid number")


def request_body(w: World, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "participant_id": w.participant,
        "disclosers": ["nav"],
        "recipients": ["skole"],
        "purposes": ["oppfolging"],
        "categories": ["contact"],
        "justification": JUSTIFICATION,
    }
    body.update(overrides)
    return body


async def ask_and_accept(stack: Stack, w: World, **overrides: Any) -> dict[str, Any]:
    asked = await stack.http.post(
        "/api/v1/consent-requests",
        json=request_body(w, **overrides),
        headers=await stack.as_org(w.skole),
    )
    assert asked.status_code == 201, asked.text
    accepted = await stack.http.post(
        f"/api/v1/me/consent-requests/{asked.json()['id']}/accept",
        headers=stack.as_citizen(w.participant),
    )
    assert accepted.status_code == 201, accepted.text
    return dict(accepted.json())


async def test_the_school_asks_the_participant_accepts_and_the_teacher_sees_navs_contact(
    stack: Stack,
) -> None:
    w = await world(stack)
    teacher = stack.as_staff(w.skole, w.teacher)
    before = await stack.http.get(w.url, headers=teacher)

    asked = await stack.http.post(
        "/api/v1/consent-requests", json=request_body(w), headers=await stack.as_org(w.skole)
    )
    pending = await stack.http.get(
        "/api/v1/me/consent-requests", headers=stack.as_citizen(w.participant)
    )
    accepted = await stack.http.post(
        f"/api/v1/me/consent-requests/{asked.json()['id']}/accept",
        json={"language": "nb"},
        headers=stack.as_citizen(w.participant),
    )
    after = await stack.http.get(w.url, headers=teacher)

    assert "email" not in before.json() and shown(before.json())["email"] == "no_consent"
    assert asked.status_code == 201, asked.text
    [request] = pending.json()["items"]
    assert request["justification"] == JUSTIFICATION and request["requester"]["orgnr"] == SKOLE
    assert accepted.status_code == 201, accepted.text
    consent = accepted.json()
    assert consent["status"] == "active" and consent["grantor"] == "participant"
    assert consent["collection"]["method"] == "digital"
    assert consent["notice"]["hash"].startswith("sha256:")
    assert [h["type"] for h in consent["history"]] == ["given"]
    assert after.json()["email"] == "kari@nav.example"
    logged = [e for e in await entries(stack) if e["caller"]["staff_id"] == str(w.teacher.id)]  # type: ignore[index]
    released = {r["field"]: r["basis"] for r in logged[-1]["released"]}  # type: ignore[attr-defined]
    assert released["participant.email"] == f"consent:{consent['id']}"
    # The request's justification is sealed at rest.
    async with stack.consent.state.engine.connect() as connection:
        dumped = repr((await connection.exec_driver_sql("SELECT * FROM consent_requests")).all())
    assert "fravær" not in dumped and "kontaktopplysningene" not in dumped


async def test_withdrawing_stops_the_very_next_read_and_twice_is_the_same_state(
    stack: Stack,
) -> None:
    w = await world(stack)
    consent = await ask_and_accept(stack, w)
    teacher = stack.as_staff(w.skole, w.teacher)
    me = stack.as_citizen(w.participant)
    url = f"/api/v1/me/consents/{consent['id']}/withdraw"

    first = await stack.http.post(url, headers=me)
    second = await stack.http.post(url, headers=me)
    read = await stack.http.get(w.url, headers=teacher)

    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == second.json()["status"] == "withdrawn"
    assert first.json()["withdrawn_at"] == second.json()["withdrawn_at"]
    assert [h["type"] for h in second.json()["history"]] == ["given", "withdrawn"]
    assert "email" not in read.json() and shown(read.json())["email"] == "no_consent"
    async with stack.consent.state.sessionmaker() as session:
        types = (await session.scalars(select(OutboxEvent.type))).all()
    assert types.count("no.broen.consent.withdrawn") == 1


async def test_no_read_begun_after_the_withdrawal_answered_releases_consent_gated_fields(
    stack: Stack,
) -> None:
    w = await world(stack)
    consent = await ask_and_accept(stack, w)
    teacher = stack.as_staff(w.skole, w.teacher)
    seen: list[tuple[float, bool]] = []
    withdrawn_at: list[float] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = await stack.http.get(w.url, headers=teacher)
            assert response.status_code == 200
            seen.append((started, "email" in response.json()))

    async def withdraw() -> None:
        await asyncio.sleep(0.2)
        response = await stack.http.post(
            f"/api/v1/me/consents/{consent['id']}/withdraw",
            headers=stack.as_citizen(w.participant),
        )
        assert response.status_code == 200
        withdrawn_at.append(time.monotonic())
        await asyncio.sleep(0.3)
        stop.set()

    await asyncio.gather(reader(), reader(), reader(), withdraw())

    [answered] = withdrawn_at
    before = [released for started, released in seen if started < answered]
    after = [released for started, released in seen if started > answered]
    assert any(before), "some reads before the withdrawal released the consented field"
    assert after and not any(after)


async def test_nav_records_a_paper_consent_the_participant_sees_and_the_school_may_not(
    stack: Stack,
) -> None:
    w = await world(stack)
    body = {
        "participant_id": w.participant,
        "disclosers": ["nav"],
        "recipients": ["skole"],
        "purposes": ["oppfolging"],
        "categories": ["contact"],
        "collection_method": "paper",
        "evidence": "Signert skjema, arkivsak 2026/4711",
        "notice": {"version": "nav-samtykke-3", "hash": "sha256:" + "ab" * 32, "language": "nb"},
    }

    by_school = await stack.http.post(
        "/api/v1/consents",
        json=body,
        headers=stack.as_staff(w.skole, w.teacher, None, SCOPES_STAFF),
    )
    by_nav = await stack.http.post(
        "/api/v1/consents", json=body, headers=stack.as_staff(w.nav, w.veileder, None, SCOPES_STAFF)
    )
    mine = await stack.http.get("/api/v1/me/consents", headers=stack.as_citizen(w.participant))
    read = await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher))

    assert by_school.status_code == 403
    assert by_school.json()["type"].endswith("/may-not-record-consent")
    assert by_nav.status_code == 201, by_nav.text
    [listed] = mine.json()["items"]
    assert listed["collection"] == {
        "method": "paper",
        "collected_by_orgnr": NAV,
        "collected_by_staff_id": str(w.veileder.id),
        "evidence": "Signert skjema, arkivsak 2026/4711",
    }
    assert listed["controllers"] == [NAV] and listed["history"][0]["type"] == "recorded"
    assert read.json()["email"] == "kari@nav.example"
    # The school, working with Kari, sees the consent but not NAV's staff id or proof.
    seen = await stack.http.get(
        f"{w.url}/consents", headers=stack.as_staff(w.skole, w.teacher, scopes=SCOPES_STAFF)
    )
    [by_school_eyes] = seen.json()["items"]
    assert by_school_eyes["collection"] == {
        "method": "paper",
        "collected_by_orgnr": NAV,
        "collected_by_staff_id": None,
        "evidence": None,
    }
    navs = await stack.http.get(
        f"{w.url}/consents", headers=stack.as_staff(w.nav, w.veileder, scopes=SCOPES_STAFF)
    )
    assert navs.json()["items"][0]["collection"]["evidence"] == "Signert skjema, arkivsak 2026/4711"
    async with stack.consent.state.sessionmaker() as session:
        types = (await session.scalars(select(OutboxEvent.type))).all()
    assert "no.broen.consent.recorded" in types


SCOPES_STAFF = ("participants:read", "consents:read", "consents:write")


async def test_bad_requests_are_refused_clearly_and_write_nothing(stack: Stack) -> None:
    w = await world(stack)
    school = await stack.as_org(w.skole)

    unknown = await stack.http.post(
        "/api/v1/consent-requests",
        json=request_body(w, purposes=["nysgjerrighet"], categories=["contact", "skostorrelse"]),
        headers=school,
    )
    never = await stack.http.post(
        "/api/v1/consent-requests",
        json=request_body(w, categories=["health.diagnosis"]),
        headers=school,
    )
    stranger = await stack.http.post(
        "/api/v1/consent-requests",
        json=request_body(w, participant_id=str(uuid.uuid4())),
        headers=school,
    )
    pending = await stack.http.get(
        "/api/v1/me/consent-requests", headers=stack.as_citizen(w.participant)
    )

    assert unknown.status_code == never.status_code == 422
    assert unknown.json()["unknown_purposes"] == ["nysgjerrighet"]
    assert unknown.json()["unknown_categories"] == ["skostorrelse"]
    assert "skostorrelse" in unknown.json()["detail"]
    assert never.json()["unknown_categories"] == ["health.diagnosis"]
    assert stranger.status_code == 404
    assert pending.json()["items"] == []


async def test_a_participant_no_organisation_of_the_caller_follows_is_the_same_404(
    stack: Stack,
) -> None:
    w = await world(stack)
    ot = await stack.add_organisation("310123463", "fylkeskommune", scopes=list(SCOPES_STAFF))
    headers = await stack.as_org(ot)

    known = await stack.http.post("/api/v1/consent-requests", json=request_body(w), headers=headers)
    unknown = await stack.http.post(
        "/api/v1/consent-requests",
        json=request_body(w, participant_id="00000000-0000-4000-8000-000000000000"),
        headers=headers,
    )

    assert known.status_code == unknown.status_code == 404
    assert known.json() == unknown.json()


async def test_a_fifteen_year_old_is_told_a_guardian_grants_and_a_guardians_consent_ends_at_18(
    stack: Stack,
) -> None:
    today = datetime.now(UTC).date()
    born = date(today.year - 15, 1, 1)
    w = await world(stack, national_id=national_id_born(born))
    asked = await stack.http.post(
        "/api/v1/consent-requests", json=request_body(w), headers=await stack.as_org(w.skole)
    )

    refused = await stack.http.post(
        f"/api/v1/me/consent-requests/{asked.json()['id']}/accept",
        headers=stack.as_citizen(w.participant),
    )
    recorded = await stack.http.post(
        "/api/v1/consents",
        json={
            "participant_id": w.participant,
            "grantor": "guardian",
            "grantor_relation": "parent",
            "disclosers": ["nav"],
            "recipients": ["skole"],
            "purposes": ["oppfolging"],
            "categories": ["contact"],
            "collection_method": "paper",
            "evidence": "Signert av foresatt",
            "notice": {"version": "v1", "hash": "sha256:" + "cd" * 32, "language": "nb"},
        },
        headers=stack.as_staff(w.nav, w.veileder, None, SCOPES_STAFF),
    )

    assert refused.status_code == 422, refused.text
    assert refused.json()["may_grant"] == {"oppfolging": ["guardian"]}
    assert "guardian" in refused.json()["detail"]
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["valid_to"].startswith(f"{born.year + 18}-01-01")


async def test_with_the_consent_service_down_consent_gated_fields_are_withheld(
    stack: Stack,
) -> None:
    w = await world(stack)
    await ask_and_accept(stack, w)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("consent service down", request=request)

    stack.gateway.state.consent_client.upstream.http._transport = httpx.MockTransport(refuse)
    read = await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher))

    assert read.status_code == 200
    assert read.json()["name"] == "Kari N." and "email" not in read.json()
    assert shown(read.json())["email"] == "not_shared"
    logged = [e for e in await entries(stack) if e["caller"]["staff_id"] == str(w.teacher.id)]  # type: ignore[index]
    reasons = {x["field"]: x["reason"] for x in logged[-1]["withheld"]}  # type: ignore[attr-defined]
    assert reasons["participant.email"] == "consent_unavailable"


async def test_staff_see_a_participants_consents_only_with_a_relationship(stack: Stack) -> None:
    w = await world(stack)
    consent = await ask_and_accept(stack, w)

    teacher = await stack.http.get(
        f"{w.url}/consents", headers=stack.as_staff(w.skole, w.teacher, scopes=SCOPES_STAFF)
    )
    colleague = await stack.http.get(
        f"{w.url}/consents", headers=stack.as_staff(w.skole, w.other_teacher, scopes=SCOPES_STAFF)
    )

    assert teacher.status_code == 200, teacher.text
    assert [c["id"] for c in teacher.json()["items"]] == [consent["id"]]
    assert colleague.status_code == 404


async def test_staff_record_a_withdrawal_given_to_them_another_way(stack: Stack) -> None:
    w = await world(stack)
    consent = await ask_and_accept(stack, w)
    ot = await stack.add_organisation("310123463", "fylkeskommune", scopes=list(SCOPES_STAFF))

    by_stranger = await stack.http.post(
        f"/api/v1/consents/{consent['id']}/withdraw", headers=await stack.as_org(ot)
    )
    by_veileder = await stack.http.post(
        f"/api/v1/consents/{consent['id']}/withdraw",
        headers=stack.as_staff(w.nav, w.veileder, None, SCOPES_STAFF),
    )

    assert by_stranger.status_code == 404
    assert by_veileder.status_code == 200, by_veileder.text
    assert by_veileder.json()["status"] == "withdrawn"
    assert by_veileder.json()["history"][-1]["actor"] == f"{NAV}/{w.veileder.id}"


async def test_a_legal_basis_registered_by_the_operator_releases_what_the_policy_says(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await world(stack)
    own = tmp_path / "policy.toml"
    # The example flow "NAV and the school share who follows the participant up", enabled.
    shipped = SHIPPED_POLICY.read_text()
    example = shipped.index('id = "nav-school-followup"')
    enabled = shipped[:example] + shipped[example:].replace("enabled = false", "enabled = true", 1)
    own.write_text(enabled.replace('version = "2025.1"', 'version = "lov-2026.1"'))
    settings = stack.gateway_settings.model_copy(update={"policy_path": own})
    gateway = create_app(
        settings,
        upstream_transports={
            "participant": httpx.ASGITransport(app=stack.participant),
            "consent": httpx.ASGITransport(app=stack.consent),
        },
    )

    async def nav_assignment_as_seen_by_the_teacher() -> dict[str, Any]:
        async with gateway.router.lifespan_context(gateway):
            token = gateway.state.auth.tokens.issue_staff_token(
                client_id=w.skole.client_id,
                agency_type="skole",
                staff=w.teacher,
                scopes=["participants:read"],
            )["access_token"]
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway), base_url="https://broen.test"
            ) as http:
                listed = await http.get(
                    f"{w.url}/assignments",
                    headers={"Authorization": f"Bearer {token}", "Broen-Purpose": "oppfolging"},
                )
        return {a["orgnr"]: a for a in listed.json()["items"]}

    unregistered = await nav_assignment_as_seen_by_the_teacher()
    monkeypatch.setenv("BROEN_CONSENT_DATABASE_URL", stack.consent.state.settings.database_url)
    monkeypatch.setenv("BROEN_KEYS_DIR", str(stack.gateway_settings.keys_dir))
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        [
            "admin",
            "legal-basis",
            "set",
            "example-nav-utdanning",
            "--title",
            "Eksempel: samarbeid NAV og skole",
            "--citation",
            "Eksempel, ikke gjeldende rett",
            "--valid-from",
            "2026-01-01T00:00:00+01:00",
            "--operator",
            "drift-ola",
            "--json",
        ],
    )
    registered = await nav_assignment_as_seen_by_the_teacher()
    public = await stack.http.get("/api/v1/legal-bases", headers=await stack.as_org(w.skole))

    assert NAV not in unregistered
    assert result.exit_code == 0, result.output
    assert registered[NAV]["role"] == "veileder"
    assert registered[NAV]["staff_id"] == str(w.veileder.id)
    [basis] = public.json()["items"]
    assert basis["ref"] == "example-nav-utdanning"
    logged = [e for e in await entries(stack) if e["policy_version"] == "lov-2026.1"]
    assert {r["basis"] for r in logged[-1]["released"] if r["owner"] == NAV} == {  # type: ignore[attr-defined]
        "legal:example-nav-utdanning"
    }
    async with stack.consent.state.sessionmaker() as session:
        [change] = (await session.scalars(select(LegalBasisChange))).all()
    assert change.changed_by == "drift-ola" and change.ref == "example-nav-utdanning"


async def test_the_participant_gets_a_signed_receipt_anyone_can_verify_with_the_published_keys(
    stack: Stack,
) -> None:
    w = await world(stack)
    consent = await ask_and_accept(stack, w)

    mine = await stack.http.get(
        f"/api/v1/me/consents/{consent['id']}/receipt", headers=stack.as_citizen(w.participant)
    )
    teachers = await stack.http.get(
        f"/api/v1/consents/{consent['id']}/receipt",
        headers=stack.as_staff(w.skole, w.teacher, None, SCOPES_STAFF),
    )
    published = await stack.http.get("/.well-known/consent-receipt-keys.json")  # no token

    assert mine.status_code == teachers.status_code == published.status_code == 200, mine.text
    token = mine.json()["receipt"]
    kid = jwt.get_unverified_header(token)["kid"]
    [key] = [k for k in published.json()["keys"] if k["kid"] == kid]
    claims = jwt.decode(token, jwt.PyJWK(key), algorithms=["EdDSA"], options={"verify_aud": False})
    assert claims["piiPrincipalId"] == w.participant
    assert claims["consent_id"] == consent["id"] and claims["status"] == "active"
    assert claims["piiControllers"] == [{"piiController": SKOLE}]
    assert "Kari" not in json.dumps(claims)
    assert all("d" not in k for k in published.json()["keys"])
