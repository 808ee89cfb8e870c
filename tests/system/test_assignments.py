"""Assignments and programme participation through the gateway, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from services.participant import directory
from services.participant.models import Assignment, OutboxEvent
from services.participant.schemas import StaffCreate, UnitCreate
from tests.system.conftest import Organisation, Stack

pytestmark = pytest.mark.anyio

NAV = "889640782"
SKOLE = "310123455"
KARI = "15080551212"


async def unit_of(stack: Stack, orgnr: str, name: str, kind: str) -> uuid.UUID:
    async with stack.participant.state.sessionmaker.begin() as session:
        unit = await directory.add_unit(session, UnitCreate(orgnr=orgnr, name=name, kind=kind))
    return unit.id


async def staff_of(stack: Stack, orgnr: str, unit_id: uuid.UUID, *roles: str) -> uuid.UUID:
    async with stack.participant.state.sessionmaker.begin() as session:
        staff = await directory.add_staff(
            session,
            StaffCreate.model_validate(
                {"orgnr": orgnr, "unit_id": unit_id, "name": "Vera", "roles": list(roles)}
            ),
        )
    return staff.id


async def registered(stack: Stack, organisation: Organisation) -> str:
    response = await stack.http.post(
        "/api/v1/participants",
        json={"national_id": KARI, "name": "Kari Nordmann", "source_system": "test"},
        headers=await stack.as_org(organisation),
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def count_assignments(stack: Stack) -> int:
    async with stack.participant.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Assignment)) or 0)


async def test_nav_assigns_a_veileder_and_the_current_one_is_derivable(stack: Stack) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    office = await unit_of(stack, NAV, "NAV Grünerløkka", "nav_kontor")
    vera = await staff_of(stack, NAV, office, "veileder")
    participant = await registered(stack, nav)
    headers = await stack.as_org(nav)

    created = await stack.http.post(
        f"/api/v1/participants/{participant}/assignments",
        json={"role": "veileder", "staff_id": str(vera)},
        headers=headers,
    )
    current = await stack.http.get(
        f"/api/v1/participants/{participant}/assignments",
        params={"role": "veileder", "at": datetime.now(UTC).isoformat()},
        headers=headers,
    )

    assert created.status_code == 201, created.text
    assert created.json()["unit_id"] == str(office)
    assert created.json()["valid_to"] is None
    assert [a["staff_id"] for a in current.json()["items"]] == [str(vera)]


async def test_reassignment_ends_the_previous_one_and_keeps_history(stack: Stack) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    office = await unit_of(stack, NAV, "NAV Grünerløkka", "nav_kontor")
    vera = await staff_of(stack, NAV, office, "veileder")
    ola = await staff_of(stack, NAV, office, "veileder")
    participant = await registered(stack, nav)
    headers = await stack.as_org(nav)
    url = f"/api/v1/participants/{participant}/assignments"
    start = datetime.now(UTC) - timedelta(days=30)
    change = start + timedelta(days=20)

    await stack.http.post(
        url,
        json={"role": "veileder", "staff_id": str(vera), "valid_from": start.isoformat()},
        headers=headers,
    )
    await stack.http.post(
        url,
        json={"role": "veileder", "staff_id": str(ola), "valid_from": change.isoformat()},
        headers=headers,
    )
    history = (await stack.http.get(url, headers=headers)).json()["items"]
    before = await stack.http.get(
        url, params={"at": (change - timedelta(days=1)).isoformat()}, headers=headers
    )
    now = await stack.http.get(url, params={"at": datetime.now(UTC).isoformat()}, headers=headers)

    assert [a["staff_id"] for a in history] == [str(vera), str(ola)]
    assert datetime.fromisoformat(history[0]["valid_to"]) == change
    assert history[1]["valid_to"] is None
    assert [a["staff_id"] for a in before.json()["items"]] == [str(vera)]
    assert [a["staff_id"] for a in now.json()["items"]] == [str(ola)]


async def test_an_organisation_cannot_assign_another_organisations_staff(stack: Stack) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    skole = await stack.add_organisation(SKOLE, "skole")
    office = await unit_of(stack, NAV, "NAV Grünerløkka", "nav_kontor")
    vera = await staff_of(stack, NAV, office, "veileder")
    await registered(stack, nav)
    participant = await registered(stack, skole)
    headers = await stack.as_org(skole)
    url = f"/api/v1/participants/{participant}/assignments"

    by_staff = await stack.http.post(
        url, json={"role": "veileder", "staff_id": str(vera)}, headers=headers
    )
    by_unit = await stack.http.post(
        url, json={"role": "veileder", "unit_id": str(office)}, headers=headers
    )

    assert by_staff.status_code == by_unit.status_code == 403
    assert by_staff.headers["content-type"] == "application/problem+json"
    assert await count_assignments(stack) == 0
    async with stack.participant.state.sessionmaker() as session:
        types = (await session.scalars(select(OutboxEvent.type))).all()
    assert not any("assignment" in t for t in types)


async def test_staff_must_hold_the_role_they_are_assigned(stack: Stack) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    school = await unit_of(stack, SKOLE, "Demo vgs", "skole")
    teacher = await staff_of(stack, SKOLE, school, "faglaerer")
    participant = await registered(stack, skole)

    response = await stack.http.post(
        f"/api/v1/participants/{participant}/assignments",
        json={"role": "kontaktlaerer", "staff_id": str(teacher)},
        headers=await stack.as_org(skole),
    )

    assert response.status_code == 422
    assert await count_assignments(stack) == 0


async def test_a_unit_inbox_can_hold_a_role_until_a_person_is_assigned(stack: Stack) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    office = await unit_of(stack, NAV, "NAV Grünerløkka", "nav_kontor")
    participant = await registered(stack, nav)

    response = await stack.http.post(
        f"/api/v1/participants/{participant}/assignments",
        json={"role": "veileder", "unit_id": str(office)},
        headers=await stack.as_org(nav),
    )

    assert response.status_code == 201
    assert response.json()["staff_id"] is None


async def test_exactly_one_assignee_is_required(stack: Stack) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    participant = await registered(stack, nav)

    response = await stack.http.post(
        f"/api/v1/participants/{participant}/assignments",
        json={"role": "veileder"},
        headers=await stack.as_org(nav),
    )

    assert response.status_code == 422


async def test_other_organisations_assignments_are_left_out_of_the_list(stack: Stack) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    skole = await stack.add_organisation(SKOLE, "skole")
    office = await unit_of(stack, NAV, "NAV Grünerløkka", "nav_kontor")
    school = await unit_of(stack, SKOLE, "Demo vgs", "skole")
    participant = await registered(stack, nav)
    await registered(stack, skole)
    await stack.http.post(
        f"/api/v1/participants/{participant}/assignments",
        json={"role": "veileder", "unit_id": str(office)},
        headers=await stack.as_org(nav),
    )
    await stack.http.post(
        f"/api/v1/participants/{participant}/assignments",
        json={"role": "kontaktlaerer", "unit_id": str(school)},
        headers=await stack.as_org(skole),
    )

    seen_by_school = await stack.http.get(
        f"/api/v1/participants/{participant}/assignments", headers=await stack.as_org(skole)
    )

    assert [a["role"] for a in seen_by_school.json()["items"]] == ["kontaktlaerer"]
    assert str(office) not in seen_by_school.text


async def test_assignment_history_pages_with_a_cursor(stack: Stack) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    office = await unit_of(stack, NAV, "NAV Grünerløkka", "nav_kontor")
    participant = await registered(stack, nav)
    headers = await stack.as_org(nav)
    url = f"/api/v1/participants/{participant}/assignments"
    start = datetime.now(UTC) - timedelta(days=10)
    for day in range(5):
        valid_from = (start + timedelta(days=day)).isoformat()
        await stack.http.post(
            url,
            json={"role": "veileder", "unit_id": str(office), "valid_from": valid_from},
            headers=headers,
        )

    seen, cursor = [], None
    for _ in range(5):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await stack.http.get(url, params=params, headers=headers)).json()
        seen.extend(a["id"] for a in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert len(seen) == len(set(seen)) == 5
    bad = await stack.http.get(url, params={"cursor": "not-a-cursor"}, headers=headers)
    assert bad.status_code == 422


async def test_programme_participation_is_a_relationship_for_a_system_while_it_lasts(
    stack: Stack,
) -> None:
    skole = await stack.add_organisation(SKOLE, "skole")
    participant = await registered(stack, skole)
    headers = await stack.as_org(skole)
    url = f"/api/v1/participants/{participant}/programmes"
    before = await stack.http.get(url, headers=headers)

    created = await stack.http.post(
        url, json={"programme": "vgo", "starts_on": "2026-08-15"}, headers=headers
    )
    listed = await stack.http.get(url, headers=headers)
    read = await stack.http.get(f"/api/v1/participants/{participant}", headers=headers)
    ended = await stack.http.patch(
        f"{url}/{created.json()['id']}",
        json={"status": "completed", "ends_on": "2027-06-20"},
        headers=headers,
    )
    after = await stack.http.get(f"/api/v1/participants/{participant}", headers=headers)
    backwards = await stack.http.post(
        url,
        json={"programme": "vgo", "starts_on": "2026-08-15", "ends_on": "2026-01-01"},
        headers=headers,
    )

    # Registering alone is no relationship (API.md): the school sees nothing of the person.
    assert before.status_code == 404
    assert created.status_code == 201, created.text
    assert [p["programme"] for p in listed.json()["items"]] == ["vgo"]
    assert read.json()["name"] == "Kari Nordmann"
    assert ended.json()["status"] == "completed"
    # Tjenstlig behov ends with the programme: so does what the school may read.
    assert after.status_code == 404
    assert backwards.status_code == 422


async def test_an_organisation_without_the_participant_gets_404_for_assignments(
    stack: Stack,
) -> None:
    nav = await stack.add_organisation(NAV, "nav")
    skole = await stack.add_organisation(SKOLE, "skole")
    participant = await registered(stack, nav)

    response = await stack.http.get(
        f"/api/v1/participants/{participant}/assignments", headers=await stack.as_org(skole)
    )

    assert response.status_code == 404
