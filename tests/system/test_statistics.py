"""Programme statistics for trial leads through the whole stack, on SQLite and PostgreSQL:
counted by programme, county and status with their outcomes, small counts suppressed so
that the totals do not give them away, read only by an auditor or a trial lead (or a
system with audit:read) of the organisation running the places, and no individual data."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import update

from services.participant import store
from services.participant.models import Event, Participant, ProgrammeParticipation
from services.participant.models import Organisation as OrganisationRow
from services.participant.statistics import MEASURES
from services.participant.store import ProgrammeCount
from tests.system.conftest import Organisation, Stack
from tests.system.test_consents import national_id_born
from tests.test_suppression import determined, faithful, tables_of

pytestmark = pytest.mark.anyio

COUNTY = "821311608"  # the trial's county: it runs the programme places
KOMMUNE = "821311616"  # another organisation running places of its own
NAV = "889640782"
SCOPES = ["participants:read", "participants:write", "events:write", "audit:read"]
URL = "/api/v1/statistics/programmes"
YEAR = {"year": "2025"}
AUGUST = date(2025, 8, 18)


def at(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


async def organisation(
    stack: Stack, orgnr: str, agency_type: str, county: str | None = None
) -> Organisation:
    added = await stack.add_organisation(orgnr, agency_type, scopes=SCOPES)
    async with stack.participant.state.sessionmaker.begin() as session:
        await session.execute(
            update(OrganisationRow).where(OrganisationRow.orgnr == orgnr).values(county=county)
        )
    return added


async def places(
    stack: Stack,
    orgnr: str,
    count: int,
    *,
    programme: str = "vgo",
    status: str = "active",
    starts_on: date = AUGUST,
    events: Iterable[tuple[str, datetime]] = (),
    recorded_by: str = COUNTY,
) -> list[uuid.UUID]:
    """`count` participants with a place in the programme and these timeline events each,
    written straight into the participant service's database."""
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(count)]
    async with stack.participant.state.sessionmaker.begin() as session:
        for participant_id in ids:
            session.add(
                Participant(
                    id=participant_id,
                    national_id_index=participant_id.hex,
                    national_id_sealed=b"-",
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        await session.flush()
        for participant_id in ids:
            session.add(
                ProgrammeParticipation(
                    id=uuid.uuid4(),
                    participant_id=participant_id,
                    orgnr=orgnr,
                    programme=programme,
                    starts_on=starts_on,
                    ends_on=None,
                    status=status,
                    recorded_at=now,
                )
            )
            for event_type, occurred_at in events:
                session.add(event(participant_id, event_type, occurred_at, recorded_by))
    return ids


def event(
    participant_id: uuid.UUID,
    event_type: str,
    occurred_at: datetime,
    orgnr: str,
    corrects: uuid.UUID | None = None,
) -> Event:
    return Event(
        id=uuid.uuid4(),
        participant_id=participant_id,
        type=event_type,
        occurred_at=occurred_at,
        recorded_at=datetime.now(UTC),
        source_orgnr=orgnr,
        source_agency_type="nav",
        source_system="test",
        verification="verified",
        payload_sealed=b"-",
        corrects=corrects,
    )


async def trial_lead(stack: Stack, org: Organisation, role: str = "trial_lead") -> dict[str, str]:
    unit = await stack.add_unit(org, name="Prosjekt", kind="stab")
    staff = await stack.add_staff(org, unit, roles=(role,))
    return stack.as_staff(org, staff, None, ("audit:read",))


def counts(body: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Every count the answer publishes."""
    for group in [*body["programmes"], body]:
        for measures in [*group["by_status"].values(), group["total"]]:
            yield from measures.values()


async def test_places_are_counted_by_programme_county_and_status_with_their_outcomes(
    stack: Stack,
) -> None:
    await organisation(stack, COUNTY, "fylkeskommune", county="Vestland")
    await organisation(stack, KOMMUNE, "kommune", county="Vestland")
    await organisation(stack, NAV, "nav")
    started = ("opplaering.startet", at(AUGUST, 6))
    # Outcomes count from any organisation (NAV records work), on or after the start date.
    await places(stack, COUNTY, 3, events=[started, ("arbeid", at(date(2026, 9, 1)))])
    await places(stack, COUNTY, 1, events=[started], recorded_by=NAV)
    await places(stack, COUNTY, 2, status="completed", events=[started, ("fagbrev", at(AUGUST))])
    # The period's first day counts; work the day before the start does not.
    await places(
        stack,
        COUNTY,
        2,
        programme="introduksjonsprogram",
        starts_on=date(2025, 1, 1),
        events=[("arbeid", datetime(2024, 12, 31, 23, 30, tzinfo=UTC))],
    )
    # Work that a later event corrects does not count.
    [corrected] = await places(stack, COUNTY, 1, programme="introduksjonsprogram")
    async with stack.participant.state.sessionmaker.begin() as session:
        wrong = event(corrected, "arbeid", at(AUGUST), NAV)
        session.add(wrong)
        await session.flush()
        session.add(event(corrected, "utenfor", at(AUGUST, 10), NAV, corrects=wrong.id))
    # Outside the period, or run by another organisation: not counted.
    await places(stack, COUNTY, 1, starts_on=date(2026, 1, 1))
    await places(stack, COUNTY, 1, starts_on=date(2024, 12, 31))
    await places(stack, KOMMUNE, 4)

    async with stack.participant.state.sessionmaker() as session:
        found = await store.programme_counts(
            session, orgnr=COUNTY, starts_from=date(2025, 1, 1), starts_before=date(2026, 1, 1)
        )

    assert sorted(found, key=lambda c: (c.programme, c.status)) == [
        ProgrammeCount("introduksjonsprogram", "Vestland", "active", 3, 0, 0, 0),
        ProgrammeCount("vgo", "Vestland", "active", 4, 4, 0, 3),
        ProgrammeCount("vgo", "Vestland", "completed", 2, 2, 2, 0),
    ]


async def test_small_counts_are_suppressed_and_cannot_be_worked_out_from_the_totals(
    stack: Stack,
) -> None:
    county = await organisation(stack, COUNTY, "fylkeskommune", county="Vestland")
    started = ("opplaering.startet", at(AUGUST))
    work = ("arbeid", at(date(2026, 6, 1)))
    await places(stack, COUNTY, 9, events=[started, work])
    await places(stack, COUNTY, 3, events=[started])
    await places(stack, COUNTY, 3, status="completed", events=[started, ("fagbrev", at(AUGUST))])
    await places(stack, COUNTY, 6, status="discontinued", events=[started])
    await places(stack, COUNTY, 7, programme="introduksjonsprogram", events=[started, work])
    await places(stack, COUNTY, 1, programme="introduksjonsprogram", status="planned")

    response = await stack.http.get(URL, params=YEAR, headers=await trial_lead(stack, county))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["orgnr"] == COUNTY and body["period"] == {"year": 2025}
    assert [(p["programme"], p["county"]) for p in body["programmes"]] == [
        ("introduksjonsprogram", "Vestland"),
        ("vgo", "Vestland"),
    ]
    assert body["suppression"]["threshold"] == 5 and "1 to 4" in body["suppression"]["rule"]
    true = {
        "places": [[1, 7, 0, 0], [0, 12, 3, 6]],
        "started": [[0, 7, 0, 0], [0, 12, 3, 6]],
        "fagbrev": [[0, 0, 0, 0], [0, 0, 3, 0]],
        "work": [[0, 7, 0, 0], [0, 9, 0, 0]],
    }
    published = tables_of(body)
    for measure in MEASURES:
        assert determined(published[measure]) == [], measure
        assert faithful(published[measure], true[measure]), measure
    assert published["places"].cells[0][0] is None  # the one planned place
    assert published["places"].cells[1][2] is None  # the three completed
    assert published["fagbrev"].total is None  # three fagbrev in all
    assert all(c["suppressed"] is (c["value"] is None) for c in counts(body))


async def test_only_an_auditor_or_a_trial_lead_of_the_organisation_reads_them(
    stack: Stack,
) -> None:
    county = await organisation(stack, COUNTY, "fylkeskommune", county="Vestland")
    await places(stack, COUNTY, 6)
    unit = await stack.add_unit(county, name="Vgs", kind="skole")
    teacher = await stack.add_staff(county, unit, roles=("kontaktlaerer", "ot_radgiver"))
    lead = await stack.add_staff(county, unit, roles=("trial_lead",))
    without_audit = await stack.add_organisation(KOMMUNE, "kommune")
    [participant] = await places(stack, KOMMUNE, 1, recorded_by=KOMMUNE)

    async def status(headers: dict[str, str]) -> tuple[int, str]:
        response = await stack.http.get(URL, params=YEAR, headers=headers)
        kind = response.json().get("type", "") if response.status_code != 200 else ""
        return response.status_code, kind.rsplit("/", 1)[-1]

    assert await status(await trial_lead(stack, county)) == (200, "")
    assert await status(await trial_lead(stack, county, "auditor")) == (200, "")
    system = {"Authorization": f"Bearer {await stack.token(county, 'audit:read')}"}
    assert await status(system) == (200, "")
    assert await status(stack.as_staff(county, teacher, None, ("audit:read",))) == (
        403,
        "statistics-role-required",
    )
    assert await status(stack.as_staff(county, lead, None, ("participants:read",))) == (
        403,
        "insufficient-scope",
    )
    assert await status(await stack.as_org(without_audit, None)) == (403, "insufficient-scope")
    assert await status(stack.as_citizen(str(participant))) == (403, "citizen-route-only")
    assert await status({}) == (401, "unauthorized")


async def test_an_organisation_sees_only_the_places_it_runs(stack: Stack) -> None:
    county = await organisation(stack, COUNTY, "fylkeskommune", county="Vestland")
    kommune = await organisation(stack, KOMMUNE, "kommune", county="Vestland")
    await places(stack, COUNTY, 8, events=[("arbeid", at(AUGUST))])
    await places(stack, KOMMUNE, 6, programme="introduksjonsprogram")

    theirs = (
        await stack.http.get(URL, params=YEAR, headers=await trial_lead(stack, kommune))
    ).json()
    ours = (await stack.http.get(URL, params=YEAR, headers=await trial_lead(stack, county))).json()

    assert [p["programme"] for p in theirs["programmes"]] == ["introduksjonsprogram"]
    assert theirs["total"]["places"] == {"value": 6, "suppressed": False}
    assert theirs["total"]["work"] == {"value": 0, "suppressed": False}
    assert [p["programme"] for p in ours["programmes"]] == ["vgo"]
    assert ours["total"]["places"]["value"] == ours["total"]["work"]["value"] == 8


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"year": "1999"}, "year"),
        ({"year": "2025-06"}, "year"),
        ({}, "year"),
        ({**YEAR, "county": "Vestland"}, "county"),
    ],
)
async def test_a_bad_period_is_a_422_problem_naming_the_field(
    stack: Stack, params: dict[str, str], field: str
) -> None:
    county = await organisation(stack, COUNTY, "fylkeskommune")

    response = await stack.http.get(URL, params=params, headers=await trial_lead(stack, county))

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_no_individual_data_leaves_with_the_statistics(stack: Stack) -> None:
    county = await organisation(stack, COUNTY, "fylkeskommune", county="Vestland")
    headers = {
        "Authorization": f"Bearer {await stack.token(county, ' '.join(SCOPES))}",
        "Broen-Purpose": "inntak",
    }
    secrets: list[str] = []
    for day in range(1, 6):
        national_id = national_id_born(date(2001, 3, day))
        name = f"Deltaker Nummer{day}"
        registered = await stack.http.post(
            "/api/v1/participants",
            json={"national_id": national_id, "name": name, "source_system": "test"},
            headers=headers,
        )
        assert registered.status_code == 201, registered.text
        participant = registered.json()["id"]
        placed = await stack.http.post(
            f"/api/v1/participants/{participant}/programmes",
            json={"programme": "vgo", "starts_on": AUGUST.isoformat()},
            headers=headers,
        )
        assert placed.status_code == 201, placed.text
        recorded = await stack.http.post(
            f"/api/v1/participants/{participant}/events",
            json={
                "type": "opplaering.startet",
                "occurred_at": at(AUGUST).isoformat(),
                "payload": {"programme": "vgo", "class_group": "VG1A"},
                "source_system": "test",
            },
            headers=headers,
        )
        assert recorded.status_code == 201, recorded.text
        secrets += [national_id, name, participant, placed.json()["id"], recorded.json()["id"]]

    response = await stack.http.get(URL, params=YEAR, headers=await trial_lead(stack, county))

    assert response.status_code == 200, response.text
    assert not [secret for secret in secrets if secret in response.text]
    assert "VG1A" not in response.text
    body = response.json()
    assert set(body) == {"orgnr", "period", "programmes", "by_status", "total", "suppression"}
    (vgo,) = body["programmes"]
    assert set(vgo) == {"programme", "county", "by_status", "total"}
    assert vgo["by_status"]["active"]["places"] == {"value": 5, "suppressed": False}
    assert vgo["by_status"]["active"]["started"] == {"value": 5, "suppressed": False}
    for count in counts(body):
        assert set(count) == {"value", "suppressed"}
