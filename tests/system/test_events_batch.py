"""NAV's bulk push, POST /api/v1/events:batch, through the gateway on SQLite and PostgreSQL:
each item is accepted or refused on its own, a refused one leaves nothing behind."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
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
OLA = "01010750160"
PER = "02030653478"  # registered by the school only
NOBODY = "55080551206"  # a valid D-nummer Broen does not know
INVALID = "15080551213"  # wrong check digits
SCOPES = ["participants:read", "participants:write", "events:write"]
START = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
URL = "/api/v1/events:batch"
RECORDED = "no.broen.timeline.event_recorded"


@dataclass
class Setting:
    nav: Organisation
    skole: Organisation
    kari: str
    ola: str
    per: str


async def register(stack: Stack, organisation: Organisation, national_id: str) -> str:
    response = await stack.http.post(
        "/api/v1/participants",
        json={"national_id": national_id, "name": "Deltaker Test", "source_system": "test"},
        headers=await stack.as_org(organisation),
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


async def setting(stack: Stack) -> Setting:
    """NAV registered Kari and Ola; the school registered Per (whom NAV does not know)."""
    nav = await stack.add_organisation(NAV, "nav", scopes=SCOPES)
    skole = await stack.add_organisation(SKOLE, "skole", scopes=SCOPES)
    kari = await register(stack, nav, KARI)
    ola = await register(stack, nav, OLA)
    per = await register(stack, skole, PER)
    return Setting(nav, skole, kari, ola, per)


def measure(key: str, days: int = 0, **naming: str) -> dict[str, Any]:
    """A `tiltak.startet` item (a NAV type); `naming` is participant_id= or national_id=."""
    return {
        "idempotency_key": key,
        **naming,
        "type": "tiltak.startet",
        "occurred_at": (START + timedelta(days=days)).isoformat(),
        "payload": {"measure_type": "opplaering", "starts_on": "2026-09-01"},
        "source_system": "Arena",
        "verification": "verified",
    }


async def push(stack: Stack, organisation: Organisation, items: list[Any]) -> dict[str, Any]:
    response = await stack.http.post(
        URL, json={"items": items}, headers=await stack.as_org(organisation, purpose=None)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert [r["index"] for r in body["items"]] == list(range(len(items)))
    return body


async def count(stack: Stack, model: type[Event] | type[Assignment]) -> int:
    async with stack.participant.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def announced(stack: Stack) -> list[str]:
    """The event ids of the outbox's `timeline.event_recorded` events."""
    async with stack.participant.state.sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxEvent.envelope).where(OutboxEvent.type == RECORDED)
        )
        return [envelope["data"]["event_id"] for envelope in rows.all()]


def statuses(body: dict[str, Any]) -> list[int]:
    return [r["status"] for r in body["items"]]


def problem_type(result: dict[str, Any]) -> str:
    return str(result["problem"]["type"]).rsplit("/", 1)[-1]


async def test_a_batch_of_good_items_is_recorded_with_one_outbox_event_each(
    stack: Stack,
) -> None:
    world = await setting(stack)
    await stack.follow(world.nav, world.kari)
    items = [
        measure("arena-1", 0, participant_id=world.kari),
        measure("arena-2", 1, participant_id=world.ola),
        measure("arena-3", 2, national_id=KARI),
        measure("arena-4", 3, participant_id=world.kari),
    ]

    body = await push(stack, world.nav, items)

    assert statuses(body) == [201] * 4
    assert (body["accepted"], body["refused"]) == (4, 0)
    assert [r["idempotency_key"] for r in body["items"]] == [i["idempotency_key"] for i in items]
    assert [r["participant_id"] for r in body["items"]] == [
        world.kari,
        world.ola,
        world.kari,
        world.kari,
    ]
    assert all(r["problem"] is None for r in body["items"])
    event_ids = [r["event_id"] for r in body["items"]]
    timeline = await stack.http.get(
        f"/api/v1/participants/{world.kari}/timeline", headers=await stack.as_org(world.nav)
    )
    assert timeline.status_code == 200, timeline.text
    assert [e["id"] for e in timeline.json()["items"]] == [event_ids[0], event_ids[2], event_ids[3]]
    assert timeline.json()["items"][0]["payload"] == {
        "measure_type": "opplaering",
        "starts_on": "2026-09-01",
    }
    assert timeline.json()["items"][0]["source"]["verification"] == "verified"
    assert sorted(await announced(stack)) == sorted(event_ids)
    assert await count(stack, Event) == 4


async def test_bad_items_are_refused_on_their_own_and_leave_nothing(stack: Stack) -> None:
    world = await setting(stack)
    items: list[Any] = [
        measure("good-1", participant_id=world.kari),
        {**measure("unknown-type", participant_id=world.kari), "type": "tiltak.oppdiktet"},
        measure("not-registered", participant_id=world.per),
        measure("unknown-participant", participant_id=str(uuid.uuid4())),
        measure("invalid-national-id", national_id=INVALID),
        {
            "idempotency_key": "not-nav's",
            "participant_id": world.kari,
            "type": "fravaer.registrert",
            "occurred_at": START.isoformat(),
            "payload": {"period_start": "2026-08-18", "period_end": "2026-08-31"},
            "source_system": "Arena",
        },
        {k: v for k, v in measure("no-type", participant_id=world.kari).items() if k != "type"},
        measure("bad-uuid", participant_id="not-a-uuid"),
        {**measure("bad-payload", participant_id=world.kari), "payload": {"starts_on": "soon"}},
        measure("both-named", participant_id=world.kari, national_id=KARI),
        "not an object",
        measure("good-2", 1, national_id=OLA),
    ]

    body = await push(stack, world.nav, items)

    assert statuses(body) == [201, 422, 404, 404, 422, 403, 422, 422, 422, 422, 422, 201]
    assert (body["accepted"], body["refused"]) == (2, 10)
    results = body["items"]
    assert problem_type(results[1]) == "unknown-event-type"
    assert [e["field"] for e in results[1]["problem"]["errors"]] == ["type"]
    # Unknown and registered by someone else answer alike: no existence oracle.
    assert results[2]["problem"] == results[3]["problem"]
    assert problem_type(results[2]) == "participant-not-found"
    assert [e["field"] for e in results[4]["problem"]["errors"]] == ["national_id"]
    assert problem_type(results[5]) == "event-type-not-owned"
    assert [e["field"] for e in results[6]["problem"]["errors"]] == ["type"]
    assert [e["field"] for e in results[7]["problem"]["errors"]] == ["participant_id"]
    assert {e["field"] for e in results[8]["problem"]["errors"]} == {
        "payload.measure_type",
        "payload.starts_on",
    }
    assert results[10]["idempotency_key"] is None
    assert all(r["event_id"] is None and r["participant_id"] is None for r in results[1:-1])
    assert INVALID not in str(body)
    assert "soon" not in str(body)
    assert await count(stack, Event) == 2
    assert sorted(await announced(stack)) == sorted(
        [results[0]["event_id"], results[-1]["event_id"]]
    )


async def test_national_ids_name_participants_and_never_leave_the_request(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world = await setting(stack)
    items = [
        measure("by-number-1", national_id=KARI),
        measure("by-number-2", national_id=OLA),
        measure("someone-elses", national_id=PER),
        measure("nobodys", national_id=NOBODY),
        measure("invalid", national_id=INVALID),
    ]

    response = await stack.http.post(
        URL, json={"items": items}, headers=await stack.as_org(world.nav, purpose=None)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert statuses(body) == [201, 201, 404, 404, 422]
    assert [r["participant_id"] for r in body["items"][:2]] == [world.kari, world.ola]
    # A person the school registered is as unknown to NAV as one nobody registered.
    assert body["items"][2]["problem"] == body["items"][3]["problem"]
    for national_id in (KARI, OLA, PER, NOBODY, INVALID):
        assert national_id not in response.text
        assert national_id not in caplog.text
    assert await count(stack, Event) == 2


async def test_resending_a_batch_replays_every_item_and_records_nothing_twice(
    stack: Stack,
) -> None:
    world = await setting(stack)
    items = [
        measure("arena-1", participant_id=world.kari),
        measure("arena-2", national_id=OLA),
        {**measure("arena-3", participant_id=world.kari), "type": "tiltak.oppdiktet"},
    ]
    first = await push(stack, world.nav, items)

    again = await push(stack, world.nav, items)
    # The same event named the other way (participant id for national id) is the same event.
    renamed = await push(stack, world.nav, [measure("arena-2", participant_id=world.ola)])

    assert statuses(first) == [201, 201, 422]
    assert statuses(again) == [200, 200, 422]
    assert (again["accepted"], again["refused"]) == (2, 1)
    assert [r["event_id"] for r in again["items"]] == [r["event_id"] for r in first["items"]]
    assert statuses(renamed) == [200]
    assert renamed["items"][0]["event_id"] == first["items"][1]["event_id"]
    assert await count(stack, Event) == 2
    assert len(await announced(stack)) == 2


async def test_a_key_reused_with_other_content_is_a_409_for_that_item_only(
    stack: Stack,
) -> None:
    world = await setting(stack)
    await push(stack, world.nav, [measure("arena-1", participant_id=world.kari)])

    body = await push(
        stack,
        world.nav,
        [
            measure("arena-1", 5, participant_id=world.kari),  # other content, same key
            measure("arena-1", 0, participant_id=world.ola),  # another participant, same key
            measure("arena-2", participant_id=world.kari),
            measure("arena-2", participant_id=world.kari),  # the same item twice: a replay
            measure("arena-2", 1, participant_id=world.kari),  # the same key changed in-batch
        ],
    )

    assert statuses(body) == [409, 409, 201, 200, 409]
    assert problem_type(body["items"][0]) == "idempotency-key-reused"
    assert body["items"][3]["event_id"] == body["items"][2]["event_id"]
    assert await count(stack, Event) == 2


async def test_concurrent_resends_of_one_batch_record_each_event_once(stack: Stack) -> None:
    world = await setting(stack)
    items = [measure(f"arena-{n}", n, participant_id=world.kari) for n in range(20)]
    headers = await stack.as_org(world.nav, purpose=None)

    answers = await asyncio.gather(
        *(stack.http.post(URL, json={"items": items}, headers=headers) for _ in range(3))
    )

    assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
    bodies = [a.json() for a in answers]
    assert all(set(statuses(body)) <= {200, 201} for body in bodies)
    assert sum(statuses(body).count(201) for body in bodies) == len(items)
    assert len({tuple(r["event_id"] for r in body["items"]) for body in bodies}) == 1
    assert await count(stack, Event) == len(items)
    assert len(await announced(stack)) == len(items)


async def test_a_single_push_and_a_batch_item_with_one_key_are_one_event(stack: Stack) -> None:
    world = await setting(stack)
    single = measure("arena-9")
    del single["idempotency_key"]
    pushed = await stack.http.post(
        f"/api/v1/participants/{world.kari}/events",
        json=single,
        headers={**await stack.as_org(world.nav), "Idempotency-Key": "arena-9"},
    )
    assert pushed.status_code == 201, pushed.text

    body = await push(stack, world.nav, [measure("arena-9", national_id=KARI)])

    assert statuses(body) == [200]
    assert body["items"][0]["event_id"] == pushed.json()["id"]
    assert await count(stack, Event) == 1


async def staff_of(stack: Stack, orgnr: str, role: str) -> uuid.UUID:
    async with stack.participant.state.sessionmaker.begin() as session:
        unit = await directory.add_unit(
            session, UnitCreate(orgnr=orgnr, name=f"Enhet {uuid.uuid4().hex[:6]}", kind="kontor")
        )
        staff = await directory.add_staff(
            session,
            StaffCreate.model_validate(
                {"orgnr": orgnr, "unit_id": unit.id, "name": "Vera", "roles": [role]}
            ),
        )
    return staff.id


def tildelt(key: str, staff_id: uuid.UUID, **naming: str) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        **naming,
        "type": "veileder.tildelt",
        "occurred_at": START.isoformat(),
        "payload": {"staff_id": str(staff_id)},
        "source_system": "Arena",
    }


async def test_veileder_tildelt_items_assign_and_a_refused_one_leaves_nothing(
    stack: Stack,
) -> None:
    world = await setting(stack)
    vera = await staff_of(stack, NAV, "veileder")
    teacher = await staff_of(stack, SKOLE, "veileder")

    body = await push(
        stack,
        world.nav,
        [
            tildelt("arena-1", vera, participant_id=world.kari),
            # Another organisation's staff: the assignment is refused, so is the event.
            tildelt("arena-2", teacher, national_id=OLA),
            measure("arena-3", participant_id=world.ola),
        ],
    )

    assert statuses(body) == [201, 403, 201]
    assert problem_type(body["items"][1]) == "not-your-organisation"
    history = await stack.http.get(
        f"/api/v1/participants/{world.kari}/assignments",
        params={"role": "veileder"},
        headers=await stack.as_org(world.nav),
    )
    assert history.status_code == 200, history.text
    assert [(a["staff_id"], a["source_event_id"]) for a in history.json()["items"]] == [
        (str(vera), body["items"][0]["event_id"])
    ]
    async with stack.participant.state.sessionmaker() as session:
        ola_events = await session.scalar(
            select(func.count()).where(Event.participant_id == uuid.UUID(world.ola))
        )
        ola_assignments = await session.scalar(
            select(func.count()).where(Assignment.participant_id == uuid.UUID(world.ola))
        )
    assert (ola_events, ola_assignments) == (1, 0)
    assert await count(stack, Assignment) == 1
    assert sorted(await announced(stack)) == sorted(
        [body["items"][0]["event_id"], body["items"][2]["event_id"]]
    )


async def test_a_batch_may_correct_an_event_of_the_same_participant(stack: Stack) -> None:
    world = await setting(stack)
    first = await push(stack, world.nav, [measure("arena-1", participant_id=world.kari)])
    original = first["items"][0]["event_id"]

    body = await push(
        stack,
        world.nav,
        [
            {**measure("arena-2", participant_id=world.kari), "corrects": original},
            {**measure("arena-3", participant_id=world.ola), "corrects": original},
            {**measure("arena-4", participant_id=world.kari), "corrects": str(uuid.uuid4())},
        ],
    )

    assert statuses(body) == [201, 422, 422]
    assert [e["field"] for e in body["items"][1]["problem"]["errors"]] == ["corrects"]


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": [measure(f"arena-{n}", national_id=KARI) for n in range(1001)]},
        {"items": {"idempotency_key": "not-a-list"}},
        {"events": [measure("arena-1", national_id=KARI)]},
        [measure("arena-1", national_id=KARI)],
    ],
    ids=["empty", "1001-items", "items-not-a-list", "other-key", "bare-list"],
)
async def test_a_batch_that_is_not_one_is_a_422_and_records_nothing(
    stack: Stack, body: Any
) -> None:
    world = await setting(stack)

    response = await stack.http.post(
        URL, json=body, headers=await stack.as_org(world.nav, purpose=None)
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert KARI not in response.text
    assert await count(stack, Event) == 0


async def test_a_school_may_not_push_without_events_write_nor_nav_types(stack: Stack) -> None:
    world = await setting(stack)
    await stack.add_organisation("974760673", "skole")  # participants:* only
    no_scope = stack.organisations["974760673"]
    items = [measure("sis-1", national_id=PER), measure("sis-2", participant_id=world.per)]

    refused = await stack.http.post(
        URL, json={"items": items}, headers=await stack.as_org(no_scope, purpose=None)
    )
    not_owned = await push(stack, world.skole, items)

    assert refused.status_code == 403
    assert refused.json()["required_scope"] == "events:write"
    assert statuses(not_owned) == [403, 403]
    assert {problem_type(r) for r in not_owned["items"]} == {"event-type-not-owned"}
    assert await count(stack, Event) == 0


async def test_the_openapi_document_describes_the_batch(stack: Stack) -> None:
    document = (await stack.http.get("/openapi.json")).json()

    post = document["paths"][URL]["post"]
    schemas = document["components"]["schemas"]

    assert post["tags"] == ["timeline"]
    request = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    batch = schemas[request.rsplit("/", 1)[-1]]
    assert batch["properties"]["items"]["maxItems"] == 1000
    assert batch["properties"]["items"]["items"]["$ref"].endswith("/EventBatchItem")
    assert {"idempotency_key", "participant_id", "national_id", "type", "payload"} <= set(
        schemas["EventBatchItem"]["properties"]
    )
    answer = post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert answer.endswith("/EventBatchResult")
    assert {"403", "422"} <= set(post["responses"])
