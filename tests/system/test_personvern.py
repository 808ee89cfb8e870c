"""Personvern through the whole stack, as a teacher, a veileder, an auditor and a participant
meet it: the policy's decision on every read, projection, the audit log and innsyn. On
SQLite and PostgreSQL. Consents here are given to the decisions directly (the `consents`
fixture); tests/system/test_consents.py goes through the consent service."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from gateway import audit
from gateway.app import create_app
from gateway.models import AuditEntry
from gateway.policy import SHIPPED_POLICY, GivenGrants
from gateway.settings import GatewaySettings
from shared.settings import ConfigurationError
from tests.system.conftest import Stack
from tests.system.world import KARI, NAV, SCOPES, SKOLE, consent, entries, shown, world

pytestmark = pytest.mark.anyio


@pytest.fixture
def consents() -> GivenGrants:
    """Grants given directly by each test: the decisions' release path, apart from the
    consent service (tests/system/test_consents.py goes through the service)."""
    return GivenGrants()


async def test_kontaktlaerer_without_consent_sees_no_nav_fields_and_the_log_says_why(
    stack: Stack,
) -> None:
    w = await world(stack)

    response = await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "Kari N."  # the school's own value
    assert "email" not in body and "kari@nav.example" not in response.text
    assert "+47 912" not in response.text
    assert shown(body)["email"] == shown(body)["phone"] == "no_consent"
    [entry] = [e for e in await entries(stack) if e["caller"]["staff_id"] == str(w.teacher.id)]  # type: ignore[index]
    assert entry["participant_id"] == w.participant and entry["purpose"] == "oppfolging"
    assert {"field": "participant.email", "reason": "no_consent", "rule": "flow.consent"} in entry[
        "withheld"
    ]  # type: ignore[operator]
    assert entry["policy_version"] == stack.gateway.state.personvern.policy.version


async def test_with_consent_the_teacher_sees_navs_contact_fields_until_it_is_withdrawn(
    stack: Stack, consents: GivenGrants
) -> None:
    w = await world(stack)
    given = consent(("contact",))
    consents.give(uuid.UUID(w.participant), given)
    teacher = stack.as_staff(w.skole, w.teacher)

    with_consent = await stack.http.get(w.url, headers=teacher)
    consents.withdraw(given.id)
    withdrawn = await stack.http.get(w.url, headers=teacher)

    assert with_consent.json()["email"] == "kari@nav.example"
    assert with_consent.json()["provenance"]["email"]["owner_orgnr"] == NAV
    assert "email" not in withdrawn.json()
    assert shown(withdrawn.json())["email"] == "no_consent"
    logged = [e for e in await entries(stack) if e["caller"]["staff_id"] == str(w.teacher.id)]  # type: ignore[index]
    released = {r["field"]: r for r in logged[0]["released"]}  # type: ignore[attr-defined]
    assert released["participant.email"]["basis"] == f"consent:{given.id}"
    assert released["participant.email"]["owner"] == NAV
    assert "participant.email" not in {r["field"] for r in logged[1]["released"]}  # type: ignore[attr-defined]


async def test_a_missing_or_refused_purpose_is_a_400_listing_the_allowed_ones(
    stack: Stack,
) -> None:
    w = await world(stack)

    missing = await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher, None))
    refused = await stack.http.get(
        w.url, headers=stack.as_staff(w.skole, w.teacher, "rapportering")
    )
    unknown = await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher, "nysgjerrig"))

    assert missing.status_code == refused.status_code == unknown.status_code == 400
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"].endswith("/purpose-required")
    assert refused.json()["type"].endswith("/purpose-not-allowed")
    allowed = ["kontakt", "oppfolging", "tilrettelegging"]
    assert missing.json()["allowed_purposes"] == refused.json()["allowed_purposes"] == allowed
    # Refused before anything was asked of the participant service: nothing to log.
    assert all(e["caller"]["staff_id"] != str(w.teacher.id) for e in await entries(stack))  # type: ignore[index]


async def test_a_colleague_without_an_assignment_gets_the_404_of_an_unknown_participant(
    stack: Stack,
) -> None:
    w = await world(stack)
    colleague = stack.as_staff(w.skole, w.other_teacher)

    hidden = await stack.http.get(w.url, headers=colleague)
    unknown = await stack.http.get(
        "/api/v1/participants/00000000-0000-4000-8000-000000000000", headers=colleague
    )
    timeline = await stack.http.get(f"{w.url}/timeline", headers=colleague)

    assert hidden.status_code == unknown.status_code == timeline.status_code == 404
    assert hidden.json() == unknown.json() == timeline.json()
    # Tjenstlig behov is checked inside the school too, and the attempt is in the log.
    logged = [e for e in await entries(stack) if e["caller"]["staff_id"] == str(w.other_teacher.id)]  # type: ignore[index]
    assert len(logged) == 2 and all(e["released"] == [] for e in logged)
    assert {w_["reason"] for w_ in logged[0]["withheld"]} == {"no_relationship"}  # type: ignore[attr-defined]


async def test_the_veileder_sees_the_schools_kontaktlaerer_assignment_only_with_consent(
    stack: Stack, consents: GivenGrants
) -> None:
    w = await world(stack)
    veileder = stack.as_staff(w.nav, w.veileder)

    without = await stack.http.get(f"{w.url}/assignments", headers=veileder)
    consents.give(uuid.UUID(w.participant), consent(("enrolment",)))
    with_consent = await stack.http.get(f"{w.url}/assignments", headers=veileder)

    assert without.status_code == 200, without.text
    assert [a["orgnr"] for a in without.json()["items"]] == [NAV]
    by_org = {a["orgnr"]: a for a in with_consent.json()["items"]}
    assert by_org[SKOLE]["role"] == "kontaktlaerer"
    assert by_org[SKOLE]["staff_id"] == str(w.teacher.id) and by_org[SKOLE]["withheld"] == []


async def test_for_strengt_fortrolig_the_school_gets_the_nav_units_routing_handle_not_its_id(
    stack: Stack, consents: GivenGrants
) -> None:
    w = await world(stack, adressebeskyttelse="strengt_fortrolig", address=None)
    consents.give(uuid.UUID(w.participant), consent(("nav.followup", "contact", "address")))

    assignments = await stack.http.get(
        f"{w.url}/assignments", headers=stack.as_staff(w.skole, w.teacher)
    )
    person = await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher))

    assert assignments.status_code == 200, assignments.text
    [nav_assignment] = [a for a in assignments.json()["items"] if a["orgnr"] == NAV]
    assert nav_assignment["role"] == "veileder"
    assert nav_assignment["unit_id"].startswith("nav-ruting-")
    assert str(w.nav_unit.id) not in assignments.text and str(w.veileder.id) not in assignments.text
    assert shown(nav_assignment) == {"staff_id": "not_shared"}
    # Contact and address of a protected person never leave NAV, even with consent.
    assert "phone" not in person.json() and "+47 912" not in person.text
    assert shown(person.json())["phone"] == "not_shared"


async def test_the_participant_sees_who_read_what_when_why_and_on_what_basis(
    stack: Stack, consents: GivenGrants
) -> None:
    w = await world(stack)
    given = consent(("contact",))
    consents.give(uuid.UUID(w.participant), given)
    await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher))

    response = await stack.http.get(
        "/api/v1/me/access-log", headers=stack.as_citizen(w.participant)
    )

    assert response.status_code == 200, response.text
    newest = response.json()["items"][0]
    assert newest["organisation"] == {
        "orgnr": SKOLE,
        "name": f"Org {SKOLE}",
        "agency_type": "skole",
    }
    assert newest["roles"] == ["kontaktlaerer"] and newest["acting_as"] == "staff"
    assert newest["purpose"] == "oppfolging"
    assert {"field": "participant.email", "basis": f"consent:{given.id}"} in newest["released"]
    assert "staff_id" not in json.dumps(newest)
    assert KARI not in response.text and "Kari" not in response.text
    # Another person's token shows nothing of Kari's log.
    stranger = await stack.http.get(
        "/api/v1/me/access-log", headers=stack.as_citizen(str(uuid.uuid4()))
    )
    assert stranger.json()["items"] == []
    as_org = await stack.http.get("/api/v1/me/access-log", headers=await stack.as_org(w.skole))
    assert as_org.status_code == 403


async def test_an_auditor_reads_its_organisations_entries_including_its_disclosures(
    stack: Stack, consents: GivenGrants
) -> None:
    w = await world(stack)
    consents.give(uuid.UUID(w.participant), consent(("contact",)))
    await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher))
    nav_auditor = await stack.add_staff(w.nav, w.nav_unit, roles=("auditor",))

    response = await stack.http.get(
        "/api/v1/audit/entries",
        headers=stack.as_staff(w.nav, nav_auditor, None, scopes=("audit:read",)),
    )
    veileder = await stack.http.get(
        "/api/v1/audit/entries", headers=stack.as_staff(w.nav, w.veileder, None, ("audit:read",))
    )

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    # The school's read released NAV's e-mail: a disclosure NAV's auditor sees.
    assert any(
        item["caller_orgnr"] == SKOLE
        and any(r["owner"] == NAV for r in item["content"]["released"])
        for item in items
    )
    assert all(
        item["caller_orgnr"] == NAV or any(r["owner"] == NAV for r in item["content"]["released"])
        for item in items
    )
    assert veileder.status_code == 403


async def test_the_consent_source_down_withholds_what_would_cross_and_serves_the_rest(
    stack: Stack, consents: GivenGrants
) -> None:
    w = await world(stack)
    consents.give(uuid.UUID(w.participant), consent(("contact",)))
    consents.available = False

    response = await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher))

    assert response.status_code == 200
    assert response.json()["name"] == "Kari N."
    assert "email" not in response.json() and shown(response.json())["email"] == "not_shared"
    [entry] = [e for e in await entries(stack) if e["caller"]["staff_id"] == str(w.teacher.id)]  # type: ignore[index]
    reasons = {x["field"]: x["reason"] for x in entry["withheld"]}  # type: ignore[attr-defined]
    assert reasons["participant.email"] == "consent_unavailable"


async def test_a_skjermet_participant_is_seen_only_by_staff_authorised_for_it(
    stack: Stack,
) -> None:
    w = await world(stack, skjermet=True)
    authorised = await stack.add_staff(
        w.nav, w.nav_unit, roles=("veileder",), skjermet_authorised=True
    )
    await stack.http.post(
        f"{w.url}/assignments",
        json={"role": "veileder", "staff_id": str(authorised.id)},
        headers=await stack.as_org(w.nav),
    )

    as_system = await stack.http.get(w.url, headers=await stack.as_org(w.nav))
    as_authorised = await stack.http.get(w.url, headers=stack.as_staff(w.nav, authorised))

    assert as_system.status_code == 404
    assert as_authorised.status_code == 200 and as_authorised.json()["skjermet"] is True


async def test_nothing_is_released_when_the_decision_cannot_be_audited(stack: Stack) -> None:
    w = await world(stack)
    await stack.gateway.state.personvern.audit.aclose()

    response = await stack.http.get(w.url, headers=stack.as_staff(w.skole, w.teacher))

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "Kari" not in response.text


async def test_the_audit_chain_verifies_and_holds_no_national_id_or_name(
    stack: Stack, consents: GivenGrants
) -> None:
    w = await world(stack)
    consents.give(uuid.UUID(w.participant), consent(("contact", "identity.basic")))
    for headers in (stack.as_staff(w.skole, w.teacher), stack.as_staff(w.nav, w.veileder)):
        assert (await stack.http.get(w.url, headers=headers)).status_code == 200
        assert (await stack.http.get(f"{w.url}/timeline", headers=headers)).status_code == 200

    keys = stack.gateway.state.audit_keys
    async with stack.gateway.state.engine.connect() as connection:
        report = await audit.verify(connection, keys)
        dumped = "\n".join(
            repr(tuple(row)) for row in (await connection.execute(select(AuditEntry))).all()
        )

    assert report.ok, report.findings
    assert report.entries >= 4
    assert KARI not in dumped and "Kari" not in dumped and "nav.example" not in dumped


async def test_a_deployments_own_policy_file_changes_what_the_gateway_releases(
    stack: Stack, keys_dir: Path, tmp_path: Path
) -> None:
    w = await world(stack)
    shipped = SHIPPED_POLICY.read_text()
    own = tmp_path / "policy.toml"
    # This county counts having registered someone as a relationship for its systems.
    own.write_text(
        shipped.replace('version = "2025.1"', 'version = "fylke-2026.1"').replace(
            'relationships = ["assigned", "programme"]',
            'relationships = ["registered", "assigned", "programme"]',
        )
    )
    ot = await stack.add_organisation("310123463", "fylkeskommune", scopes=SCOPES)
    await stack.http.post(
        "/api/v1/participants",
        json={"national_id": KARI, "name": "Kari OT", "source_system": "OT-systemet"},
        headers=await stack.as_org(ot),
    )
    settings = stack.gateway_settings.model_copy(update={"policy_path": own})
    gateway = create_app(
        settings, upstream_transports={"participant": httpx.ASGITransport(app=stack.participant)}
    )
    async with gateway.router.lifespan_context(gateway):
        token = gateway.state.auth.tokens.issue_system_token(
            client_id=ot.client_id, orgnr=ot.orgnr, agency_type="fylkeskommune", scopes=SCOPES
        )["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Broen-Purpose": "oppfolging"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway), base_url="https://broen.test"
        ) as http:
            own_policy = await http.get(w.url, headers=headers)
    shipped_policy = await stack.http.get(w.url, headers=await stack.as_org(ot))

    assert shipped_policy.status_code == 404
    assert own_policy.status_code == 200 and own_policy.json()["name"] == "Kari OT"
    [entry] = [e for e in await entries(stack) if e["policy_version"] == "fylke-2026.1"]
    assert entry["caller"]["client_id"] == ot.client_id  # type: ignore[index]


def test_an_invalid_policy_file_stops_the_gateway_with_a_clear_message(
    keys_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "policy.toml"
    broken.write_text(SHIPPED_POLICY.read_text().replace('basis = "never"', 'basis = "maybe"'))
    settings = GatewaySettings(keys_dir=keys_dir, policy_path=broken)

    with pytest.raises(ConfigurationError) as refused:
        create_app(settings)

    assert str(broken) in str(refused.value) and "flows" in str(refused.value)


async def test_an_ot_adviser_sees_the_schools_absence_only_with_consent_and_only_to_follow_up(
    stack: Stack, consents: GivenGrants
) -> None:
    w = await world(stack)
    ot = await stack.add_organisation("310123463", "fylkeskommune", scopes=SCOPES)
    ot_unit = await stack.add_unit(ot, name="Oppfølgingstjenesten", kind="ot")
    adviser = await stack.add_staff(ot, ot_unit, roles=("ot_radgiver",))
    await stack.http.post(
        "/api/v1/participants",
        json={"national_id": KARI, "name": "Kari", "source_system": "OT-systemet"},
        headers=await stack.as_org(ot),
    )
    assigned = await stack.http.post(
        f"{w.url}/assignments",
        json={"role": "ot_radgiver", "staff_id": str(adviser.id)},
        headers=await stack.as_org(ot),
    )
    assert assigned.status_code == 201, assigned.text
    recorded = await stack.http.post(
        f"{w.url}/events",
        json={
            "type": "fravaer.registrert",
            "occurred_at": "2026-11-20T08:00:00+01:00",
            "payload": {"period_start": "2026-11-16", "period_end": "2026-11-20", "days": 3},
            "source_system": "Visma InSchool",
        },
        headers=await stack.as_org(w.skole),
    )
    assert recorded.status_code == 201, recorded.text
    timeline = f"{w.url}/timeline"

    without = await stack.http.get(timeline, headers=stack.as_staff(ot, adviser))
    consents.give(
        uuid.UUID(w.participant), consent(("attendance",), recipients=frozenset({"fylkeskommune"}))
    )
    following_up = await stack.http.get(timeline, headers=stack.as_staff(ot, adviser))
    for_contact = await stack.http.get(timeline, headers=stack.as_staff(ot, adviser, "kontakt"))

    assert without.status_code == 200 and without.json()["items"] == []
    [absence] = following_up.json()["items"]
    assert absence["type"] == "fravaer.registrert" and absence["payload"]["days"] == 3
    assert absence["source"]["orgnr"] == SKOLE
    # The consent is for follow-up; absence crosses for no other purpose.
    assert for_contact.json()["items"] == []
