"""Participant records through the gateway, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select, text

from services.participant.models import OutboxEvent, Participant
from tests.system.conftest import Stack

pytestmark = pytest.mark.anyio

NAV = "889640782"
SKOLE = "310123455"
OT = "310123463"
# Synthetic fødselsnumre with valid check digits.
KARI = "15080551212"
OLA = "02030653478"


def registration(national_id: str = KARI, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "national_id": national_id,
        "name": "Kari Nordmann",
        "phone": "+47 912 34 567",
        "source_system": "Demo SIS",
    }
    body.update(overrides)
    return body


async def test_school_registers_a_participant_and_reads_back_its_own_fields(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    headers = await stack.as_org(skole)

    created = await stack.http.post("/api/v1/participants", json=registration(), headers=headers)

    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["Location"] == f"/api/v1/participants/{body['id']}"
    assert KARI not in created.text
    # Registering is not yet tjenstlig behov: the school's own values need a relationship.
    assert "name" not in body
    assert {"field": "name", "reason": "no_relationship"} in body["withheld"]
    await stack.follow(skole, body["id"])
    read = await stack.http.get(f"/api/v1/participants/{body['id']}", headers=headers)
    assert read.status_code == 200
    seen = read.json()
    assert seen["name"] == "Kari Nordmann" and seen["phone"] == "+47 912 34 567"
    assert seen["birth_date"] == "2005-08-15"
    assert seen["provenance"]["name"]["owner_orgnr"] == SKOLE
    assert seen["provenance"]["name"]["source_system"] == "Demo SIS"
    assert read.headers["ETag"] == created.headers["ETag"]


async def test_registering_a_known_person_looks_exactly_like_registering_a_new_one(
    stack: Stack,
) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    skole = await stack.add_organisation(SKOLE, "skole")
    await stack.http.post(
        "/api/v1/participants", json=registration(), headers=await stack.as_org(nav)
    )

    known = await stack.http.post(
        "/api/v1/participants", json=registration(), headers=await stack.as_org(skole)
    )
    new = await stack.http.post(
        "/api/v1/participants", json=registration(OLA), headers=await stack.as_org(skole)
    )

    assert known.status_code == new.status_code == 201
    assert set(known.json()) == set(new.json())
    assert known.json()["withheld"] == new.json()["withheld"]
    # The entity tag is opaque: a version count would say that someone registered them first.
    assert len(known.headers["ETag"]) == len(new.headers["ETag"])
    assert not known.headers["ETag"].strip('"').isdigit()


async def test_the_same_organisation_registering_twice_gets_the_same_id(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    headers = await stack.as_org(skole)

    first = await stack.http.post("/api/v1/participants", json=registration(), headers=headers)
    again = await stack.http.post("/api/v1/participants", json=registration(), headers=headers)

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


async def test_another_organisations_values_are_withheld_across_agencies(stack: Stack) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    skole = await stack.add_organisation(SKOLE, "skole")
    nav_view = await stack.http.post(
        "/api/v1/participants",
        json=registration(name="Kari N.", email="kari@example.no"),
        headers=await stack.as_org(nav),
    )
    participant_id = nav_view.json()["id"]
    await stack.http.post(
        "/api/v1/participants", json=registration(phone=None), headers=await stack.as_org(skole)
    )
    await stack.follow(skole, participant_id)

    school_view = await stack.http.get(
        f"/api/v1/participants/{participant_id}", headers=await stack.as_org(skole)
    )

    body = school_view.json()
    assert body["name"] == "Kari Nordmann"  # the school's own value, not NAV's
    assert "email" not in body and "kari@example.no" not in school_view.text
    # Without the participant's consent; another agency is told only that much.
    assert {"field": "email", "reason": "no_consent"} in body["withheld"]
    assert {"field": "phone", "reason": "no_consent"} in body["withheld"]
    assert set(body["provenance"]) == {"name", "birth_date"}


async def test_a_participant_you_have_no_relationship_to_is_answered_like_an_unknown_one(
    stack: Stack,
) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    skole = await stack.add_organisation(SKOLE, "skole")
    created = await stack.http.post(
        "/api/v1/participants", json=registration(), headers=await stack.as_org(nav)
    )
    school = await stack.as_org(skole)

    hidden = await stack.http.get(f"/api/v1/participants/{created.json()['id']}", headers=school)
    unknown = await stack.http.get(
        "/api/v1/participants/00000000-0000-4000-8000-000000000000", headers=school
    )
    hidden_lookup = await stack.http.post(
        "/api/v1/participants/lookup", json={"national_id": KARI}, headers=school
    )
    unknown_lookup = await stack.http.post(
        "/api/v1/participants/lookup", json={"national_id": OLA}, headers=school
    )

    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json() == unknown.json()
    assert hidden_lookup.status_code == unknown_lookup.status_code == 404
    assert hidden_lookup.json() == unknown_lookup.json() == unknown.json()
    assert hidden.headers["content-type"] == "application/problem+json"


async def test_lookup_by_national_id_in_the_body_finds_your_participant(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    headers = await stack.as_org(skole)
    created = await stack.http.post("/api/v1/participants", json=registration(), headers=headers)
    await stack.follow(skole, created.json()["id"])

    found = await stack.http.post(
        "/api/v1/participants/lookup", json={"national_id": KARI}, headers=headers
    )

    assert found.status_code == 200
    assert found.json()["id"] == created.json()["id"]
    assert KARI not in found.text


async def test_an_invalid_national_id_is_refused_without_echoing_it(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    wrong = "15080551213"  # last check digit off by one

    response = await stack.http.post(
        "/api/v1/participants", json=registration(wrong), headers=await stack.as_org(skole)
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert wrong not in response.text
    assert [e["field"] for e in response.json()["errors"]] == ["national_id"]
    async with stack.participant.state.sessionmaker() as session:
        assert (await session.scalars(select(Participant))).all() == []


async def test_malformed_json_is_a_422_problem(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    headers = {**(await stack.as_org(skole)), "Content-Type": "application/json"}

    response = await stack.http.post("/api/v1/participants", content=b'{"name": ', headers=headers)

    assert response.status_code == 422
    assert response.json()["type"].endswith("/validation-error")
    assert response.json()["detail"] == "Malformed JSON body."


async def test_updates_need_the_current_etag(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    headers = await stack.as_org(skole)
    created = await stack.http.post("/api/v1/participants", json=registration(), headers=headers)
    await stack.follow(skole, created.json()["id"])
    url = f"/api/v1/participants/{created.json()['id']}"
    etag = created.headers["ETag"]
    change = {"phone": "+47 400 00 000", "source_system": "Demo SIS"}

    missing = await stack.http.patch(url, json=change, headers=headers)
    updated = await stack.http.patch(url, json=change, headers={**headers, "If-Match": etag})
    stale = await stack.http.patch(url, json=change, headers={**headers, "If-Match": etag})

    assert missing.status_code == 428
    assert updated.status_code == 200
    assert updated.json()["phone"] == "+47 400 00 000"
    assert updated.headers["ETag"] != etag
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"


async def test_a_field_set_to_null_removes_your_value(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    headers = await stack.as_org(skole)
    created = await stack.http.post("/api/v1/participants", json=registration(), headers=headers)
    await stack.follow(skole, created.json()["id"])

    updated = await stack.http.patch(
        f"/api/v1/participants/{created.json()['id']}",
        json={"phone": None, "source_system": "Demo SIS"},
        headers={**headers, "If-Match": created.headers["ETag"]},
    )

    assert updated.status_code == 200
    assert updated.json()["name"] == "Kari Nordmann"
    assert "phone" not in updated.json()


async def test_the_national_id_is_stored_only_encrypted(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    await stack.http.post(
        "/api/v1/participants", json=registration(), headers=await stack.as_org(skole)
    )

    async with stack.participant.state.engine.connect() as connection:
        dumped = []
        for table in ("participants", "attributes", "registrations", "outbox", "participant_keys"):
            rows = (await connection.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608
            dumped.extend(repr(tuple(row)) for row in rows)
    everything = "\n".join(dumped)
    assert KARI not in everything
    assert "Kari Nordmann" not in everything
    assert KARI.encode().hex() not in everything


async def test_registration_records_an_event_without_personal_data(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    created = await stack.http.post(
        "/api/v1/participants", json=registration(), headers=await stack.as_org(skole)
    )

    async with stack.participant.state.sessionmaker() as session:
        events = (await session.scalars(select(OutboxEvent))).all()

    assert [e.type for e in events] == ["no.broen.participant.registered"]
    envelope = events[0].envelope
    assert envelope["specversion"] == "1.0"
    assert envelope["subject"] == created.json()["id"]
    assert KARI not in json.dumps(envelope) and "Kari" not in json.dumps(envelope)


async def test_a_refused_write_leaves_nothing_behind(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")

    response = await stack.http.post(
        "/api/v1/participants",
        json=registration(address={"street": "Gate 1", "postal_code": "12", "city": "Oslo"}),
        headers=await stack.as_org(skole),
    )

    assert response.status_code == 422
    async with stack.participant.state.sessionmaker() as session:
        assert (await session.scalars(select(Participant))).all() == []
        assert (await session.scalars(select(OutboxEvent))).all() == []


async def test_writing_needs_the_write_scope(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole", scopes=["participants:read"])

    response = await stack.http.post(
        "/api/v1/participants", json=registration(), headers=await stack.as_org(skole)
    )

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_organisation_not_registered_in_broen_is_refused(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    async with stack.participant.state.engine.begin() as connection:
        await connection.execute(text("DELETE FROM organisations"))

    response = await stack.http.post(
        "/api/v1/participants", json=registration(), headers=await stack.as_org(skole)
    )

    assert response.status_code == 403
    assert response.json()["type"].endswith("/organisation-not-registered")


async def test_a_d_nummer_is_accepted_and_gives_the_birth_date(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    d_nummer = "55080551206"  # day + 40: a D-nummer for someone born 15 August 2005

    headers = await stack.as_org(skole)
    response = await stack.http.post(
        "/api/v1/participants", json=registration(d_nummer), headers=headers
    )
    await stack.follow(skole, response.json()["id"])
    read = await stack.http.get(f"/api/v1/participants/{response.json()['id']}", headers=headers)

    assert response.status_code == 201
    assert read.json()["birth_date"] == "2005-08-15"
    assert d_nummer not in response.text and d_nummer not in read.text


async def test_the_request_id_follows_the_request_to_the_service(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    seen: list[str | None] = []

    async def spy(request: httpx.Request) -> None:
        if not request.url.path.startswith("/internal/"):  # not the gateway's own event intake
            seen.append(request.headers.get("Broen-Request-Id"))

    stack.gateway.state.participant_client.upstream.http.event_hooks["request"].append(spy)
    response = await stack.http.post(
        "/api/v1/participants",
        json=registration(),
        headers={**(await stack.as_org(skole)), "Broen-Request-Id": "trace-me-1"},
    )

    assert response.headers["Broen-Request-Id"] == "trace-me-1"
    assert seen == ["trace-me-1"]


async def test_a_request_id_that_is_not_an_id_is_replaced_not_passed_on(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")

    response = await stack.http.get(
        "/api/v1/organisations",
        headers={**(await stack.as_org(skole)), "Broen-Request-Id": "Kari Nordmann 15080551212"},
    )

    assert response.status_code == 200
    assert "Kari" not in response.headers["Broen-Request-Id"]
