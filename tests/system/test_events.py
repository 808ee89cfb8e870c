"""Events leave through the policy: the changes feed and signed webhooks carry only what the
reader could read through the API, about participants it may see, at least once each."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from standardwebhooks import Webhook

from gateway.events.targets import TargetRules, webhook_client
from gateway.events.webhooks import RetryPolicy
from gateway.models import EventRecord
from gateway.policy import GivenGrants
from shared.clients import Upstream
from tests.system.conftest import Organisation, Stack
from tests.system.webhook_receiver import Receiver
from tests.system.world import SCOPES, World, consent, world

pytestmark = pytest.mark.anyio

ASSIGNMENT_STARTED = "no.broen.assignment.started"
PROBLEM = "application/problem+json"


@pytest.fixture
def consents() -> GivenGrants:
    return GivenGrants()


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    # The receivers run on loopback, as an operator's own network would be allowed.
    return {
        "webhook_allowed_networks": ["127.0.0.0/8"],
        "webhook_retry_base_seconds": 0.1,
        "webhook_retry_max_seconds": 0.4,
        "events_interval_seconds": 0.05,
    }


@pytest.fixture
def service_overrides() -> dict[str, Any]:
    return {"events_interval_seconds": 0.05}


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    """Wait for something the background tasks do (polling, as a client would)."""
    async with asyncio.timeout(seconds):
        while not await check():  # noqa: ASYNC110 (the state is in another component)
            await asyncio.sleep(0.05)


async def feed(
    stack: Stack, organisation: Organisation, cursor: str | None = None, **params: str
) -> dict[str, Any]:
    query = {"limit": "500", **params, **({"cursor": cursor} if cursor else {})}
    response = await stack.http.get(
        "/api/v1/events", params=query, headers=await stack.as_org(organisation)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def logged_events(stack: Stack) -> int:
    async with stack.gateway.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(EventRecord)) or 0)


def delivery_count(outcome: str) -> float:
    return REGISTRY.get_sample_value("broen_webhook_deliveries_total", {"outcome": outcome}) or 0


async def everything_taken_in(stack: Stack) -> None:
    """Wait until the gateway's log holds every event the services have written."""
    written = 0
    for app in (stack.participant, stack.consent, stack.messaging):
        async with app.state.sessionmaker() as session:
            written += int(
                await session.scalar(select(func.count()).select_from(app_outbox(app))) or 0
            )

    async def taken() -> bool:
        return await logged_events(stack) >= written

    await until(taken)


def app_outbox(app: Any) -> Any:
    from services.consent.models import OutboxEvent as ConsentOutbox
    from services.messaging.models import OutboxEvent as MessagingOutbox
    from services.participant.models import OutboxEvent as ParticipantOutbox

    return {
        "participant": ParticipantOutbox,
        "consent": ConsentOutbox,
        "messaging": MessagingOutbox,
    }[app.title.split()[1]]


def assignments_in(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The assignment events of a page by the organisation that made them."""
    return {e["data"]["orgnr"]: e for e in items if e["type"] == ASSIGNMENT_STARTED}


async def subscribe(
    stack: Stack, organisation: Organisation, url: str, types: list[str] | None = None
) -> dict[str, Any]:
    response = await stack.http.post(
        "/api/v1/subscriptions",
        json={"url": url, "event_types": types or [ASSIGNMENT_STARTED], "purpose": "oppfolging"},
        headers=await stack.as_org(organisation, None),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def reassign_veileder(stack: Stack, w: World) -> None:
    """NAV hands Kari to another veileder: an assignment.started NAV owns (nav.followup)."""
    other = await stack.add_staff(w.nav, w.nav_unit, roles=("veileder",))
    response = await stack.http.post(
        f"{w.url}/assignments",
        json={"role": "veileder", "staff_id": str(other.id)},
        headers=await stack.as_org(w.nav),
    )
    assert response.status_code == 201, response.text


async def deliveries(stack: Stack, organisation: Organisation, subscription: str) -> list[Any]:
    response = await stack.http.get(
        f"/api/v1/subscriptions/{subscription}/deliveries",
        headers=await stack.as_org(organisation, None),
    )
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


# --- the changes feed ------------------------------------------------------------------------


async def test_the_school_feed_carries_navs_assignment_only_with_consent(
    stack: Stack, consents: GivenGrants
) -> None:
    w = await world(stack)
    await everything_taken_in(stack)

    without = await feed(stack, w.skole)
    consents.give(uuid.UUID(w.participant), consent(("nav.followup",)))
    with_consent = await feed(stack, w.skole)
    nav_sees = await feed(stack, w.nav)

    # Without consent the school sees its own kontaktlærer assignment, nothing of NAV's.
    assert set(assignments_in(without["items"])) == {w.skole.orgnr}
    assert str(w.veileder.id) not in json.dumps(without)
    # With it, NAV's veileder assignment (who follows Kari up at NAV) reaches the school.
    navs = assignments_in(with_consent["items"])[w.nav.orgnr]["data"]
    assert navs["role"] == "veileder" and navs["staff_id"] == str(w.veileder.id)
    assert navs["withheld"] == []
    assert set(assignments_in(nav_sees["items"])) == {w.nav.orgnr}  # no consent for enrolment
    event = with_consent["items"][0]
    assert event["specversion"] == "1.0" and event["subject"] == w.participant
    assert {"id", "source", "type", "time", "sequence", "data"} <= set(event)
    # Registrations are not published; nor is a national id or a name, anywhere.
    assert not any(e["type"].endswith("participant.registered") for e in with_consent["items"])
    assert w.national_id not in json.dumps(with_consent) and "Kari" not in json.dumps(with_consent)


async def test_an_organisation_that_does_not_follow_the_participant_gets_no_event(
    stack: Stack, consents: GivenGrants
) -> None:
    w = await world(stack)
    consents.give(uuid.UUID(w.participant), consent(("nav.followup", "enrolment")))
    stranger = await stack.add_organisation("974760673", "skole", scopes=SCOPES)
    await everything_taken_in(stack)

    page = await feed(stack, stranger)

    assert page["items"] == []
    assert page["next_cursor"]  # never null, even when nothing is for you


async def test_the_feed_cursor_is_never_null_and_continues_where_the_last_poll_ended(
    stack: Stack,
) -> None:
    w = await world(stack)
    await everything_taken_in(stack)
    first = await feed(stack, w.skole)

    at_the_end = await feed(stack, w.skole, first["next_cursor"])
    await reassign_kontaktlaerer(stack, w)
    await everything_taken_in(stack)
    later = await feed(stack, w.skole, at_the_end["next_cursor"])
    small_pages = await feed(stack, w.skole, limit="1")

    assert first["items"] and at_the_end["items"] == []
    assert at_the_end["next_cursor"] == first["next_cursor"]
    [new] = later["items"]
    assert new["type"] == ASSIGNMENT_STARTED and new["data"]["orgnr"] == w.skole.orgnr
    assert int(new["sequence"]) > max(int(e["sequence"]) for e in first["items"])
    assert len(small_pages["items"]) == 1 and small_pages["next_cursor"]


async def reassign_kontaktlaerer(stack: Stack, w: World) -> None:
    response = await stack.http.post(
        f"{w.url}/assignments",
        json={"role": "kontaktlaerer", "staff_id": str(w.other_teacher.id)},
        headers=await stack.as_org(w.skole),
    )
    assert response.status_code == 201, response.text


async def test_the_feed_is_for_systems_declaring_a_purpose(stack: Stack) -> None:
    w = await world(stack)

    staff = await stack.http.get("/api/v1/events", headers=stack.as_staff(w.skole, w.teacher))
    no_purpose = await stack.http.get("/api/v1/events", headers=await stack.as_org(w.skole, None))
    bad_cursor = await stack.http.get(
        "/api/v1/events", params={"cursor": "not-ours"}, headers=await stack.as_org(w.skole)
    )
    no_scope = await stack.add_organisation("974760673", "skole")
    unscoped = await stack.http.get("/api/v1/events", headers=await stack.as_org(no_scope))

    assert staff.status_code == 403 and unscoped.status_code == 403
    assert no_purpose.status_code == 400 and bad_cursor.status_code == 422
    for response in (staff, no_purpose, bad_cursor, unscoped):
        assert response.headers["content-type"] == PROBLEM


# --- webhooks --------------------------------------------------------------------------------


async def test_webhooks_are_signed_per_standard_webhooks_and_carry_only_released_fields(
    stack: Stack, consents: GivenGrants
) -> None:
    outcomes = {o: delivery_count(o) for o in ("delivered", "withheld")}
    w = await world(stack)
    await everything_taken_in(stack)
    receiver = await Receiver().start()
    try:
        subscription = await subscribe(stack, w.skole, receiver.url)
        await reassign_veileder(stack, w)  # no consent yet: not for the school

        async def withheld() -> bool:
            found = await deliveries(stack, w.skole, subscription["id"])
            return [d["status"] for d in found] == ["withheld"]

        await until(withheld)
        consents.give(uuid.UUID(w.participant), consent(("nav.followup",)))
        await reassign_veileder(stack, w)
        await reassign_kontaktlaerer(stack, w)

        async def two_arrived() -> bool:
            return len(receiver.received) >= 2

        await until(two_arrived)
        await asyncio.sleep(0.3)  # anything more would have come by now
    finally:
        await receiver.stop()

    verifier = Webhook(subscription["secret"])
    events = [verifier.verify(r.body, r.headers) for r in receiver.received]
    assert {e["data"]["orgnr"] for e in events} == {w.nav.orgnr, w.skole.orgnr}
    assert len(events) == 2
    for event, received in zip(events, receiver.received, strict=True):
        assert received.headers["webhook-id"] == event["id"]
        assert received.headers["content-type"].startswith("application/cloudevents+json")
    assert subscription["secret"].startswith("whsec_")
    listed = await stack.http.get(
        f"/api/v1/subscriptions/{subscription['id']}", headers=await stack.as_org(w.skole, None)
    )
    assert "secret" not in listed.json() and listed.json()["status"] == "active"
    statuses = sorted(d["status"] for d in await deliveries(stack, w.skole, subscription["id"]))
    assert statuses == ["delivered", "delivered", "withheld"]
    assert delivery_count("delivered") == outcomes["delivered"] + 2  # in /metrics
    assert delivery_count("withheld") == outcomes["withheld"] + 1


async def test_a_receiver_down_for_a_while_gets_everything_when_it_is_back(
    stack: Stack,
) -> None:
    w = await world(stack)
    await everything_taken_in(stack)
    receiver = Receiver(port=Receiver.free_port())  # nothing listens yet
    subscription = await subscribe(stack, w.skole, receiver.url)
    for _ in range(3):
        await reassign_kontaktlaerer(stack, w)

    async def retried() -> bool:
        found = await deliveries(stack, w.skole, subscription["id"])
        return len(found) == 3 and all(d["attempts"] >= 2 for d in found)

    await until(retried)
    await receiver.start()
    try:

        async def all_delivered() -> bool:
            found = await deliveries(stack, w.skole, subscription["id"])
            return all(d["status"] == "delivered" for d in found)

        await until(all_delivered)
    finally:
        await receiver.stop()

    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(ids) == 3
    found = await deliveries(stack, w.skole, subscription["id"])
    assert {d["event_id"] for d in found} == ids


async def test_a_receiver_answering_500_is_retried_and_a_410_disables_the_subscription(
    stack: Stack,
) -> None:
    w = await world(stack)
    await everything_taken_in(stack)
    receiver = await Receiver(status=500).start()
    try:
        subscription = await subscribe(stack, w.skole, receiver.url)
        await reassign_kontaktlaerer(stack, w)

        async def failed_twice() -> bool:
            found = await deliveries(stack, w.skole, subscription["id"])
            return any(d["attempts"] >= 2 and d["last_result"] == "HTTP 500" for d in found)

        await until(failed_twice)
        receiver.status = 200

        async def delivered() -> bool:
            found = await deliveries(stack, w.skole, subscription["id"])
            return [d["status"] for d in found] == ["delivered"]

        await until(delivered)
        receiver.status = 410
        await reassign_kontaktlaerer(stack, w)

        async def disabled() -> bool:
            response = await stack.http.get(
                f"/api/v1/subscriptions/{subscription['id']}",
                headers=await stack.as_org(w.skole, None),
            )
            return bool(response.json()["status"] == "disabled")

        await until(disabled)
    finally:
        await receiver.stop()
    assert len(receiver.received) == 1


async def test_a_withdrawn_consent_stops_pending_retries(
    stack: Stack, consents: GivenGrants
) -> None:
    w = await world(stack)
    await everything_taken_in(stack)
    given = consent(("nav.followup",))
    consents.give(uuid.UUID(w.participant), given)
    receiver = await Receiver(status=503).start()
    try:
        subscription = await subscribe(stack, w.skole, receiver.url)
        await reassign_veileder(stack, w)

        async def attempted() -> bool:
            found = await deliveries(stack, w.skole, subscription["id"])
            return bool(found and found[0]["attempts"] >= 1)

        await until(attempted)
        # The receiver stays down: an attempt under way when the consent goes fails too,
        # and the next one finds nothing it may send.
        consents.withdraw(given.id)

        async def withheld() -> bool:
            found = await deliveries(stack, w.skole, subscription["id"])
            return [d["status"] for d in found] == ["withheld"]

        await until(withheld)
    finally:
        await receiver.stop()
    assert receiver.received == []


async def test_dead_letters_are_listed_and_a_replay_sends_them_again(stack: Stack) -> None:
    w = await world(stack)
    await everything_taken_in(stack)
    dispatcher = stack.gateway.state.dispatcher
    dispatcher.retry = RetryPolicy(
        base_seconds=0.1, max_seconds=0.2, window_seconds=0.5, lease_seconds=30
    )
    receiver = await Receiver(status=500).start()
    try:
        subscription = await subscribe(stack, w.skole, receiver.url)
        await reassign_kontaktlaerer(stack, w)
        url = f"/api/v1/subscriptions/{subscription['id']}/deliveries"

        async def dead() -> bool:
            response = await stack.http.get(
                url, params={"status": "dead"}, headers=await stack.as_org(w.skole, None)
            )
            return len(response.json()["items"]) == 1

        await until(dead)
        receiver.status = 200
        [event] = (await feed(stack, w.skole, types=ASSIGNMENT_STARTED))["items"][-1:]
        replay = await stack.http.post(
            f"/api/v1/subscriptions/{subscription['id']}/replay",
            json={"from_sequence": int(event["sequence"])},
            headers=await stack.as_org(w.skole, None),
        )
        assert replay.status_code == 202, replay.text
        assert replay.json() == {"scheduled": 1}

        async def arrived() -> bool:
            return len(receiver.received) == 1

        await until(arrived)
    finally:
        await receiver.stop()
    assert receiver.received[0].headers["webhook-id"] == event["id"]


async def test_webhook_targets_must_be_public_https(stack: Stack) -> None:
    w = await world(stack)
    await everything_taken_in(stack)
    headers = await stack.as_org(w.skole, None)
    refused = [
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest",
        "http://example.org/hook",
        "https://user:secret@example.org/hook",
        "ftp://example.org/hook",
        "https://[::1]/hook",
    ]
    answers = [
        await stack.http.post(
            "/api/v1/subscriptions",
            json={"url": url, "event_types": [ASSIGNMENT_STARTED], "purpose": "oppfolging"},
            headers=headers,
        )
        for url in refused
    ]
    unknown_type = await stack.http.post(
        "/api/v1/subscriptions",
        json={"url": "https://example.org/h", "event_types": ["x"], "purpose": "oppfolging"},
        headers=headers,
    )
    refused_purpose = await stack.http.post(
        "/api/v1/subscriptions",
        json={
            "url": "https://example.org/h",
            "event_types": [ASSIGNMENT_STARTED],
            "purpose": "nysgjerrig",
        },
        headers=headers,
    )
    accepted = await stack.http.post(
        "/api/v1/subscriptions",
        json={
            "url": "https://example.org/h",
            "event_types": [ASSIGNMENT_STARTED],
            "purpose": "oppfolging",
        },
        headers=headers,
    )

    assert [a.status_code for a in answers] == [422] * len(refused)
    assert all(a.json()["type"].endswith("/webhook-target-refused") for a in answers)
    assert unknown_type.status_code == 422 and refused_purpose.status_code == 400
    assert accepted.status_code == 201


async def test_every_connection_checks_the_address_the_name_resolves_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = await Receiver().start()
    try:
        client = webhook_client(TargetRules(), timeout_seconds=2)
        async with client:
            # A loopback address is refused by name as by number, although it listens.
            with pytest.raises(httpx.ConnectError):
                await client.post(f"http://localhost:{receiver.port}/hooks")
            # A public name re-pointed at a private address (DNS rebinding) too.
            import gateway.events.targets as targets

            async def rebound(host: str, port: int) -> list[Any]:
                import ipaddress

                return [ipaddress.ip_address("127.0.0.1")]

            monkeypatch.setattr(targets, "_resolve", rebound)
            with pytest.raises(httpx.ConnectError):
                await client.post(f"http://broen-receiver.example:{receiver.port}/hooks")
        allowed = webhook_client(TargetRules(dev=True), timeout_seconds=2)
        async with allowed:
            delivered = await allowed.post(f"http://127.0.0.1:{receiver.port}/hooks")
            receiver.status = 307  # a redirect is an answer, never followed
            redirected = await allowed.post(f"http://127.0.0.1:{receiver.port}/hooks")
    finally:
        await receiver.stop()
    assert delivered.status_code == 200 and len(receiver.received) == 1
    assert redirected.status_code == 307


async def test_an_ingest_killed_before_confirming_loses_nothing_and_stores_each_event_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    puller = stack.gateway.state.ingest
    await puller.aclose()  # this test runs the rounds itself
    await world(stack)
    original = Upstream.call

    async def killed(self: Upstream, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if path.endswith("/published"):
            raise ConnectionResetError("killed after appending, before confirming")
        return await original(self, method, path, *args, **kwargs)

    monkeypatch.setattr(Upstream, "call", killed)
    with pytest.raises(ConnectionResetError):
        await puller.pull_once()
    monkeypatch.undo()
    while await puller.pull_once():
        pass
    await puller.pull_once()

    async with stack.gateway.state.sessionmaker() as session:
        in_log = list((await session.scalars(select(EventRecord.event_id))).all())
    written: list[str] = []
    for app in (stack.participant, stack.consent, stack.messaging):
        async with app.state.sessionmaker() as session:
            written += (await session.scalars(select(app_outbox(app).event_id))).all()
    assert sorted(in_log) == sorted(written)
