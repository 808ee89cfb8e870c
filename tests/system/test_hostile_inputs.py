"""Hostile input tried on purpose (issue "Survives"): oversized and deeply nested JSON,
invalid UTF-8, path traversal and SQL metacharacters in ids, a token for another audience,
and another organisation's ids for every resource type. Each is refused with a clear 4xx
problem, and nothing is written."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gateway.models import Subscription
from gateway.tokens import AccessTokens
from services.consent.models import Consent
from services.messaging.models import Message, Thread
from services.participant.models import (
    Assignment,
    Event,
    Participant,
    ProgrammeParticipation,
)
from tests.system.conftest import Stack
from tests.system.test_messaging import MESSAGING, consent_to_messages, open_thread
from tests.system.world import SCOPES, World, world

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"
OUTSIDER = "821311616"  # a kommune that follows nobody in the world


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    return {"webhook_allowed_networks": ["127.0.0.0/8"]}


async def rows(stack: Stack) -> dict[str, int]:
    """How many rows each resource's table holds, across the components."""
    counted: dict[str, int] = {}
    for app, models in (
        (stack.participant, (Participant, Assignment, ProgrammeParticipation, Event)),
        (stack.messaging, (Thread, Message)),
        (stack.consent, (Consent,)),
        (stack.gateway, (Subscription,)),
    ):
        async with app.state.sessionmaker() as session:
            for model in models:
                total = await session.scalar(select(func.count()).select_from(model))
                counted[model.__tablename__] = int(total or 0)
    return counted


def refused(response: httpx.Response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == PROBLEM
    assert "Traceback" not in response.text


async def test_hostile_bodies_and_ids_get_a_problem_and_write_nothing(stack: Stack) -> None:
    w = await world(stack)
    headers = {**await stack.as_org(w.skole), "Content-Type": "application/json"}
    before = await rows(stack)

    for body in (
        b"[" * 100_000 + b"]" * 100_000,  # nested past any parser's depth
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"national_id": "\xff\xfe", "name": "x", "source_system": "s"}',  # invalid UTF-8
        b'{"national_id": "15080551212\\u0000", "name": "a\\u0000b", "source_system": "s"}',
        b'{"national_id": "15080551212", "name": "' + b"x" * 100_000 + b'", "source_system": "s"}',
        b"x" * (stack.gateway_settings.max_body_bytes + 1),
    ):
        answer = await stack.http.post("/api/v1/participants", content=body, headers=headers)
        refused(answer, 400, 413, 422)
        assert "15080551212" not in answer.text

    for path in (
        "/api/v1/participants/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/participants/../../etc/passwd",
        "/api/v1/participants/1'%20OR%20'1'='1",
        "/api/v1/participants/15080551212",
        f"/api/v1/participants/{w.participant}%00",
        "/api/v1/threads?participant_id=1'%20OR%201=1--",
        "/api/v1/events?cursor=%27%3B%20DROP%20TABLE%20event_log%3B--",
        "/api/v1/threads/%2e%2e%2f%2e%2e%2finternal%2fv1%2foutbox",
    ):
        refused(await stack.http.get(path, headers=headers), 400, 403, 404, 422)

    assert await rows(stack) == before


async def test_a_token_for_another_audience_is_refused(stack: Stack) -> None:
    w = await world(stack)
    ours = stack.gateway.state.auth.tokens
    # Signed with the gateway's own key, but issued for another deployment's audience.
    elsewhere = AccessTokens(ours.keys, issuer="https://broen.other.example", lifetime_seconds=60)
    token = elsewhere.issue_system_token(
        client_id=w.skole.client_id, orgnr=w.skole.orgnr, agency_type="skole", scopes=SCOPES
    )["access_token"]

    answer = await stack.http.get(
        w.url, headers={"Authorization": f"Bearer {token}", "Broen-Purpose": "oppfolging"}
    )

    refused(answer, 401)


async def test_another_organisations_ids_are_refused_for_every_resource_type(
    stack: Stack,
) -> None:
    w = await world(stack)
    ids = await resources_of(stack, w)
    outsider = await stack.add_organisation(OUTSIDER, "kommune", scopes=SCOPES)
    unit = await stack.add_unit(outsider, name="Oppfølging", kind="kommune")
    person = await stack.add_staff(outsider, unit, roles=("kontaktlaerer",))
    system = await stack.as_org(outsider)
    staff = stack.as_staff(outsider, person, scopes=MESSAGING)
    stranger = stack.as_citizen(str(uuid.uuid4()))
    before = await rows(stack)
    p, c, t, s = w.url, ids["consent"], ids["thread"], ids["subscription"]

    attempts: list[tuple[str, str, dict[str, str], dict[str, Any] | None]] = [
        ("GET", p, system, None),
        ("PATCH", p, {**system, "If-Match": '"1"'}, {"phone": "+47 400 00 000"}),
        ("GET", f"{p}/assignments", system, None),
        ("POST", f"{p}/assignments", system, {"role": "kontaktlaerer", "staff_id": str(person.id)}),
        ("GET", f"{p}/programmes", system, None),
        ("PATCH", f"{p}/programmes/{ids['programme']}", system, {"status": "completed"}),
        ("GET", f"{p}/timeline", system, None),
        ("GET", f"{p}/consents", system, None),
        ("POST", f"/api/v1/consents/{c}/withdraw", system, {"reason": "x"}),
        ("GET", f"/api/v1/consents/{c}/receipt", system, None),
        ("GET", f"/api/v1/me/consents/{c}", stranger, None),
        ("POST", f"/api/v1/me/consents/{c}/withdraw", stranger, None),
        ("GET", f"/api/v1/threads/{t}", staff, None),
        ("GET", f"/api/v1/threads/{t}/messages", staff, None),
        ("POST", f"/api/v1/threads/{t}/messages", staff, {"body": "Hei"}),
        ("POST", f"/api/v1/threads/{t}/read", staff, None),
        ("POST", f"/api/v1/threads/{t}/close", staff, None),
        ("GET", f"/api/v1/subscriptions/{s}", system, None),
        ("GET", f"/api/v1/subscriptions/{s}/deliveries", system, None),
        ("POST", f"/api/v1/subscriptions/{s}/replay", system, {"from_sequence": 1}),
        ("DELETE", f"/api/v1/subscriptions/{s}", system, None),
    ]
    for method, url, headers, body in attempts:
        answer = await stack.http.request(method, url, json=body, headers=headers)
        assert answer.status_code in (400, 403, 404, 409, 422), (method, url, answer.text[:300])
        assert answer.headers["content-type"] == PROBLEM, (method, url)
    # A timeline event about someone the kommune does not follow is refused too.
    pushed = await stack.http.post(
        f"{p}/events",
        json={
            "type": "fravaer.registrert",
            "occurred_at": "2026-09-01T08:00:00+02:00",
            "payload": {"period_start": "2026-08-18", "period_end": "2026-08-31"},
            "source_system": "Kommunens fagsystem",
        },
        headers=system,
    )
    refused(pushed, 403, 404)

    assert await rows(stack) == before
    # The same ids answer their owners: the refusals above were about who asked.
    school = await stack.as_org(w.skole)
    teacher = stack.as_staff(w.skole, w.teacher, scopes=MESSAGING)
    for url, headers in (
        (p, school),
        (f"{p}/programmes", school),
        (f"{p}/consents", school),
        (f"/api/v1/threads/{t}", teacher),
        (f"/api/v1/subscriptions/{s}", await stack.as_org(w.skole, None)),
        (f"/api/v1/me/consents/{c}", stack.as_citizen(w.participant)),
    ):
        answer = await stack.http.get(url, headers=headers)
        assert answer.status_code == 200, (url, answer.text[:300])


async def resources_of(stack: Stack, w: World) -> dict[str, str]:
    """A programme place, a consent, a thread and a subscription of the world's two."""
    placed = await stack.http.post(
        f"{w.url}/programmes",
        json={"programme": "vgo", "starts_on": "2026-08-18"},
        headers=await stack.as_org(w.skole),
    )
    assert placed.status_code == 201, placed.text
    consent = await consent_to_messages(stack, w)
    thread = await open_thread(stack, w)
    subscribed = await stack.http.post(
        "/api/v1/subscriptions",
        json={
            "url": "http://127.0.0.1:9/hook",
            "event_types": ["no.broen.assignment.started"],
            "purpose": "oppfolging",
        },
        headers=await stack.as_org(w.skole, None),
    )
    assert subscribed.status_code == 201, subscribed.text
    return {
        "programme": str(placed.json()["id"]),
        "consent": consent,
        "thread": str(thread["id"]),
        "subscription": str(subscribed.json()["id"]),
    }
