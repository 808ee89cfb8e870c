"""The participant's timeline through the gateway, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from services.participant import directory
from services.participant.models import Assignment, Event, OutboxEvent
from services.participant.schemas import StaffCreate, UnitCreate
from tests.system.conftest import Organisation, Stack

pytestmark = pytest.mark.anyio

NAV = "889640782"
SKOLE = "310123455"
KARI = "15080551212"
SCOPES = ["participants:read", "participants:write", "events:write"]
START = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


async def organisation(stack: Stack, orgnr: str, agency_type: str) -> Organisation:
    return await stack.add_organisation(orgnr, agency_type, scopes=SCOPES)


async def registered(stack: Stack, organisation: Organisation) -> str:
    response = await stack.http.post(
        "/api/v1/participants",
        json={"national_id": KARI, "name": "Kari Nordmann", "source_system": "test"},
        headers=await stack.as_org(organisation),
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def staff_of(stack: Stack, orgnr: str, *roles: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A unit of the organisation and a staff member in it: (unit id, staff id)."""
    async with stack.participant.state.sessionmaker.begin() as session:
        unit = await directory.add_unit(
            session, UnitCreate(orgnr=orgnr, name=f"Enhet {uuid.uuid4().hex[:6]}", kind="kontor")
        )
        staff = await directory.add_staff(
            session,
            StaffCreate.model_validate(
                {"orgnr": orgnr, "unit_id": unit.id, "name": "Vera", "roles": list(roles)}
            ),
        )
    return unit.id, staff.id


def absence(occurred_at: datetime = START, **payload: Any) -> dict[str, Any]:
    return {
        "type": "fravaer.registrert",
        "occurred_at": occurred_at.isoformat(),
        "payload": {"period_start": "2026-08-18", "period_end": "2026-08-31", **payload},
        "source_system": "Visma InSchool",
    }


async def count(stack: Stack, model: type[Event] | type[Assignment]) -> int:
    async with stack.participant.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def outbox_types(stack: Stack) -> list[str]:
    async with stack.participant.state.sessionmaker() as session:
        return list((await session.scalars(select(OutboxEvent.type))).all())


async def test_a_retry_with_the_same_key_and_body_returns_the_first_event(stack: Stack) -> None:
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, skole)
    headers = {**await stack.as_org(skole), "Idempotency-Key": "sis-4711"}
    url = f"/api/v1/participants/{participant}/events"

    first = await stack.http.post(url, json=absence(days=3), headers=headers)
    # The same body with its keys in another order is the same request.
    reordered = dict(reversed(list(absence(days=3).items())))
    retry = await stack.http.post(url, json=reordered, headers=headers)

    assert first.status_code == retry.status_code == 201, first.text
    assert retry.json() == first.json()
    assert first.json()["payload"] == {
        "period_start": "2026-08-18",
        "period_end": "2026-08-31",
        "days": 3,
    }
    assert first.json()["source"] == {
        "orgnr": SKOLE,
        "agency_type": "skole",
        "system": "Visma InSchool",
        "verification": "self_reported",
    }
    assert await count(stack, Event) == 1
    assert (await outbox_types(stack)).count("no.broen.timeline.event_recorded") == 1


async def test_concurrent_retries_with_one_key_record_one_event(stack: Stack) -> None:
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, skole)
    headers = {**await stack.as_org(skole), "Idempotency-Key": "sis-4712"}
    url = f"/api/v1/participants/{participant}/events"

    answers = await asyncio.gather(
        *(stack.http.post(url, json=absence(), headers=headers) for _ in range(3))
    )

    assert {a.status_code for a in answers} == {201}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert await count(stack, Event) == 1


async def test_the_same_key_with_another_body_is_a_409_and_stores_nothing(stack: Stack) -> None:
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, skole)
    headers = {**await stack.as_org(skole), "Idempotency-Key": "sis-4711"}
    url = f"/api/v1/participants/{participant}/events"

    await stack.http.post(url, json=absence(days=3), headers=headers)
    reused = await stack.http.post(url, json=absence(days=4), headers=headers)

    assert reused.status_code == 409
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["type"].endswith("/idempotency-key-reused")
    assert await count(stack, Event) == 1


async def test_without_a_key_each_post_is_a_new_event(stack: Stack) -> None:
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, skole)
    headers = await stack.as_org(skole)
    url = f"/api/v1/participants/{participant}/events"

    first = await stack.http.post(url, json=absence(), headers=headers)
    second = await stack.http.post(url, json=absence(), headers=headers)

    assert first.json()["id"] != second.json()["id"]
    assert await count(stack, Event) == 2


async def test_an_unknown_event_type_is_a_422_that_does_not_list_the_catalogue(
    stack: Stack,
) -> None:
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, skole)

    response = await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json={**absence(), "type": "fravaer.oppdiktet"},
        headers=await stack.as_org(skole),
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/unknown-event-type")
    assert [e["field"] for e in response.json()["errors"]] == ["type"]
    assert "frafall.risiko" not in response.text
    assert await count(stack, Event) == 0


async def test_a_payload_that_does_not_match_is_a_422_naming_fields_never_values(
    stack: Stack,
) -> None:
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, skole)
    body = absence(days="Kari var syk", diagnosis="Hemmelig diagnose")
    del body["payload"]["period_end"]

    response = await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json=body,
        headers=await stack.as_org(skole),
    )

    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"payload.diagnosis", "payload.days", "payload.period_end"}
    assert "Kari" not in response.text
    assert "Hemmelig" not in response.text
    assert await count(stack, Event) == 0


async def test_an_agency_may_not_record_a_type_it_does_not_own(stack: Stack) -> None:
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, skole)

    response = await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json={
            "type": "tiltak.startet",
            "occurred_at": START.isoformat(),
            "payload": {"measure_type": "opplaering", "starts_on": "2026-09-01"},
            "source_system": "Visma InSchool",
        },
        headers=await stack.as_org(skole),
    )

    assert response.status_code == 403
    assert response.json()["type"].endswith("/event-type-not-owned")
    assert await count(stack, Event) == 0


async def test_an_organisation_that_did_not_register_the_participant_gets_404(
    stack: Stack,
) -> None:
    nav = await organisation(stack, NAV, "nav")
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, nav)

    response = await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json=absence(),
        headers=await stack.as_org(skole),
    )
    timeline = await stack.http.get(
        f"/api/v1/participants/{participant}/timeline", headers=await stack.as_org(skole)
    )

    assert response.status_code == timeline.status_code == 404
    assert await count(stack, Event) == 0


async def test_recording_an_event_needs_the_events_write_scope(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")  # participants:* only
    participant = await registered(stack, skole)

    response = await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json=absence(),
        headers=await stack.as_org(skole),
    )

    assert response.status_code == 403
    assert response.json()["required_scope"] == "events:write"


async def test_a_correction_references_the_earlier_event_which_stays_unchanged(
    stack: Stack,
) -> None:
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, skole)
    await stack.follow(skole, participant)
    headers = await stack.as_org(skole)
    url = f"/api/v1/participants/{participant}/events"
    original = (await stack.http.post(url, json=absence(days=3), headers=headers)).json()

    correction = await stack.http.post(
        url, json={**absence(days=2), "corrects": original["id"]}, headers=headers
    )
    unknown = await stack.http.post(
        url, json={**absence(days=2), "corrects": str(uuid.uuid4())}, headers=headers
    )
    items = (await stack.http.get(f"/api/v1/participants/{participant}/timeline", headers=headers))
    by_id = {e["id"]: e for e in items.json()["items"]}

    assert correction.status_code == 201, correction.text
    assert correction.json()["corrects"] == original["id"]
    assert by_id[original["id"]] == {**original, "withheld": []}
    assert by_id[correction.json()["id"]]["payload"]["days"] == 2
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["corrects"]


async def test_a_correction_must_name_an_event_of_the_same_participant(stack: Stack) -> None:
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, skole)
    headers = await stack.as_org(skole)
    other = await stack.http.post(
        "/api/v1/participants",
        json={"national_id": "01010750160", "name": "Ola Nordmann", "source_system": "test"},
        headers=headers,
    )
    assert other.status_code == 201, other.text
    elsewhere = await stack.http.post(
        f"/api/v1/participants/{other.json()['id']}/events", json=absence(), headers=headers
    )

    response = await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json={**absence(), "corrects": elsewhere.json()["id"]},
        headers=headers,
    )

    assert response.status_code == 422
    assert await count(stack, Event) == 1


async def test_the_timeline_pages_with_a_cursor_in_the_order_things_happened(
    stack: Stack,
) -> None:
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, skole)
    await stack.follow(skole, participant)
    headers = await stack.as_org(skole)
    url = f"/api/v1/participants/{participant}/timeline"
    # Recorded out of order; two events at the same moment are ordered by id.
    offsets = [5, 1, 4, 0, 2, 2, 6]
    for days in offsets:
        await stack.http.post(
            f"/api/v1/participants/{participant}/events",
            json=absence(START + timedelta(days=days)),
            headers=headers,
        )

    seen: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = await stack.http.get(url, params=params, headers=headers)
        assert page.status_code == 200, page.text
        seen.extend(page.json()["items"])
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert len({e["id"] for e in seen}) == len(seen) == len(offsets)
    keys = [(datetime.fromisoformat(e["occurred_at"]), e["id"]) for e in seen]
    assert keys == sorted(keys)
    bad = await stack.http.get(url, params={"cursor": "not-a-cursor"}, headers=headers)
    assert bad.status_code == 422


async def test_veileder_tildelt_from_nav_moves_the_veileder_assignment(stack: Stack) -> None:
    nav = await organisation(stack, NAV, "nav")
    _, vera = await staff_of(stack, NAV, "veileder")
    _, ola = await staff_of(stack, NAV, "veileder")
    participant = await registered(stack, nav)
    headers = await stack.as_org(nav)
    change = START + timedelta(days=20)

    def assigned(staff_id: uuid.UUID, occurred_at: datetime, **extra: str) -> dict[str, Any]:
        return {
            "type": "veileder.tildelt",
            "occurred_at": occurred_at.isoformat(),
            "payload": {"staff_id": str(staff_id), **extra},
            "source_system": "Arena",
            "verification": "verified",
        }

    first = await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json=assigned(vera, START),
        headers=headers,
    )
    second = await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json=assigned(ola, START + timedelta(days=21), valid_from=change.isoformat()),
        headers=headers,
    )
    history = await stack.http.get(
        f"/api/v1/participants/{participant}/assignments",
        params={"role": "veileder"},
        headers=headers,
    )

    assert first.status_code == second.status_code == 201, second.text
    items = history.json()["items"]
    assert [a["staff_id"] for a in items] == [str(vera), str(ola)]
    assert datetime.fromisoformat(items[0]["valid_from"]) == START
    assert datetime.fromisoformat(items[0]["valid_to"]) == change
    assert datetime.fromisoformat(items[1]["valid_from"]) == change
    assert items[1]["valid_to"] is None
    assert [a["source_event_id"] for a in items] == [first.json()["id"], second.json()["id"]]


async def test_veileder_tildelt_naming_another_organisations_staff_is_refused(
    stack: Stack,
) -> None:
    nav = await organisation(stack, NAV, "nav")
    await organisation(stack, SKOLE, "skole")
    _, teacher = await staff_of(stack, SKOLE, "veileder")
    participant = await registered(stack, nav)

    response = await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json={
            "type": "veileder.tildelt",
            "occurred_at": START.isoformat(),
            "payload": {"staff_id": str(teacher)},
            "source_system": "Arena",
        },
        headers={**await stack.as_org(nav), "Idempotency-Key": "arena-1"},
    )

    assert response.status_code == 403
    assert await count(stack, Event) == 0
    assert await count(stack, Assignment) == 0
    assert not any("timeline" in t or "assignment" in t for t in await outbox_types(stack))


async def test_the_payload_is_stored_sealed(stack: Stack) -> None:
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, skole)
    note = "Bekymret for situasjonen hjemme"

    response = await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json={
            "type": "frafall.risiko",
            "occurred_at": START.isoformat(),
            "payload": {"level": "hoy", "note": note},
            "source_system": "Visma InSchool",
        },
        headers=await stack.as_org(skole),
    )

    assert response.status_code == 201, response.text
    assert response.json()["payload"]["note"] == note
    async with stack.participant.state.sessionmaker() as session:
        sealed = await session.scalar(select(Event.payload_sealed))
        envelopes = (await session.scalars(select(OutboxEvent.envelope))).all()
    assert sealed is not None
    assert note.encode() not in sealed
    assert b"hoy" not in sealed
    assert note not in str(envelopes)


async def test_a_school_does_not_see_other_organisations_events(stack: Stack) -> None:
    nav = await organisation(stack, NAV, "nav")
    skole = await organisation(stack, SKOLE, "skole")
    participant = await registered(stack, nav)
    await registered(stack, skole)
    await stack.follow(nav, participant)
    await stack.follow(skole, participant)
    await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json={
            "type": "tiltak.startet",
            "occurred_at": START.isoformat(),
            "payload": {"measure_type": "opplaering_lengre_varighet", "starts_on": "2026-09-01"},
            "source_system": "Arena",
        },
        headers=await stack.as_org(nav),
    )
    await stack.http.post(
        f"/api/v1/participants/{participant}/events",
        json=absence(),
        headers=await stack.as_org(skole),
    )

    seen_by_school = await stack.http.get(
        f"/api/v1/participants/{participant}/timeline", headers=await stack.as_org(skole)
    )
    seen_by_nav = await stack.http.get(
        f"/api/v1/participants/{participant}/timeline", headers=await stack.as_org(nav)
    )

    assert [e["type"] for e in seen_by_school.json()["items"]] == ["fravaer.registrert"]
    assert "opplaering_lengre_varighet" not in seen_by_school.text
    assert [e["type"] for e in seen_by_nav.json()["items"]] == ["tiltak.startet"]


async def test_integrators_read_the_event_catalogue_through_the_gateway(stack: Stack) -> None:
    skole = await organisation(stack, SKOLE, "skole")

    response = await stack.http.get("/api/v1/event-types", headers=await stack.as_org(skole))

    assert response.status_code == 200
    absence_type = response.json()["types"]["fravaer.registrert"]
    assert absence_type["owners"] == ["skole", "fylkeskommune"]
    assert absence_type["payload"]["period_start"] == {
        "type": "date",
        "category": "attendance",
        "required": True,
    }
    document = (await stack.http.get("/openapi.json")).json()
    post = document["paths"]["/api/v1/participants/{participant_id}/events"]["post"]
    assert {"403", "404", "409", "422"} <= set(post["responses"])
    assert "/api/v1/event-types" in document["paths"]
