"""Faults, with the components as real processes on loopback (issue 9, "Faults"):

- a service killed during mixed load through the gateway (the participant service killed;
  on SQLite also messaging, stalled past the gateway's upstream timeout first): quick 503
  problems, no 500, recovery without restarting the gateway, no acknowledged write lost,
  refused writes retried once each;
- the consent service stalled, then down: consent-gated fields withheld (fail closed, the
  audit log says why), everything else served;
- the NATS server stalled, killed and started again while events flow, a service
  restarted meanwhile: every outbox event in the gateway's log once.

One stack per database backend serves the scenarios (starting four processes costs more
than the scenarios themselves), with a NATS server of its own; a scenario that kills a
component starts it again before it ends, and the next one resumes or starts anything
left down. Each scenario reports its figures (tests/system/running.py `report`).

Bounds are derived from the gateway's configured upstream timeouts, generously: they tell
a hang from an answer, not a fast answer from a slow one.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import Any

import httpx
import nats
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from stdnum.no import fodselsnummer

from bench.messaging import CLIENT_ASSERTION, JWT_BEARER, STAFF_SCOPES, Tokens
from broen_cli.dev import synthetic_national_id
from gateway.models import AuditEntry, EventRecord
from services.consent.models import OutboxEvent as ConsentOutbox
from services.messaging.models import Message
from services.messaging.models import OutboxEvent as MessagingOutbox
from services.participant.models import Event, Participant
from services.participant.models import OutboxEvent as ParticipantOutbox
from shared.outbox import OutboxMixin
from tests.system.running import (
    STACK_SCOPES,
    Stack,
    nats_server_binary,
    report,
    running_stack,
)

pytestmark = pytest.mark.slow

UPSTREAM_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 0.5
# The longest a gateway answer may take while a service is down: one upstream call timing
# out, another connecting, and room for a 2-core machine busy starting a process.
ANSWER_BOUND_S = 2 * UPSTREAM_TIMEOUT_S + CONNECT_TIMEOUT_S + 2.0
CLIENT_TIMEOUT_S = 4 * ANSWER_BOUND_S  # past this a request counts as hung
RECOVERY_BOUND_S = 15.0  # from the process answering its health check to a 2xx through it
PACE_S = 0.05  # each load client's pause between requests: load, not a CPU hog
PROBLEM = "application/problem+json"
OUTBOXES: dict[str, type[OutboxMixin]] = {
    "participant": ParticipantOutbox,
    "consent": ConsentOutbox,
    "messaging": MessagingOutbox,
}


@pytest.fixture(scope="module")
def stack(db_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"faults-{db_backend}")
    env = {
        "BROEN_GATEWAY_UPSTREAM_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT_S),
        "BROEN_GATEWAY_UPSTREAM_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT_S),
        "BROEN_MESSAGING_UPSTREAM_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT_S),
        "BROEN_MESSAGING_UPSTREAM_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT_S),
    }
    with running_stack(db_backend, workdir, nats_binary=nats_server_binary(), env=env) as running:
        yield running


@pytest.fixture(autouse=True)
def everything_running(stack: Stack) -> None:
    """A scenario that failed half-way may have left a component stalled or down: resume
    it, or start it again."""
    stack.procs.resume_all()
    for name in stack.procs.how:
        if not stack.procs.running(name):
            stack.procs.start_again(name)


# --- the world, over HTTP ------------------------------------------------------------------


@dataclass
class Clients:
    """An HTTP client on the gateway and the headers of each kind of caller, fetched before
    any fault (a staff token needs the directory, in the participant service)."""

    http: httpx.AsyncClient
    nav: dict[str, str]
    skole: dict[str, str]
    teacher: dict[str, str]
    veileder: dict[str, str]

    @classmethod
    async def of(cls, stack: Stack, http: httpx.AsyncClient) -> Clients:
        tokens = Tokens(http, stack.gateway, STACK_SCOPES)
        return cls(
            http,
            await tokens.headers(stack.nav, purpose=True),
            await tokens.headers(stack.skole, purpose=True),
            await tokens.headers(stack.skole, stack.teacher, purpose=True),
            await tokens.headers(stack.nav, stack.veileder, purpose=True),
        )


def gateway_client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=stack.gateway,
        timeout=CLIENT_TIMEOUT_S,
        limits=httpx.Limits(max_connections=20),
    )


def fresh_national_ids() -> Iterator[str]:
    """Synthetic fødselsnumre, each once: born on a day from 2000 on, individual numbers
    500-999 (those whose check digits exist)."""
    for day in itertools.count():
        born = date(2000, 1, 1) + timedelta(days=day)
        for individual in range(500, 1000):
            candidate = synthetic_national_id(f"{born:%d%m%y}{individual:03d}")
            if fodselsnummer.is_valid(candidate):
                yield candidate


_numbers = fresh_national_ids()


def problem_of(response: httpx.Response) -> str:
    """What an assertion may say about an answer: its status and, for a problem, its type
    and title (never the body: it may hold personal data)."""
    said = str(response.status_code)
    if response.headers.get("content-type", "").startswith(PROBLEM):
        problem = response.json()
        said += f" {problem.get('type')} {problem.get('title')}"
    return said


async def expect(call: Awaitable[httpx.Response], status: int) -> dict[str, Any]:
    response = await call
    assert response.status_code == status, problem_of(response)
    body: dict[str, Any] = response.json()
    return body


async def followed_up(stack: Stack, c: Clients) -> str:
    """A participant NAV and the school both registered, with a veileder and a
    kontaktlærer assigned, NAV's contact details shared with the school and messages from
    the school to NAV consented to (each recorded by its disclosing side)."""
    national_id = next(_numbers)
    registered = await expect(
        c.http.post(
            "/api/v1/participants",
            json={
                "national_id": national_id,
                "name": "Deltaker Feil",
                "phone": "+47 912 34 567",
                "email": "deltaker@nav.example",
                "source_system": "Arena",
            },
            headers=c.nav,
        ),
        201,
    )
    participant = str(registered["id"])
    await expect(
        c.http.post(
            "/api/v1/participants",
            json={"national_id": national_id, "name": "D. Feil", "source_system": "SIS"},
            headers=c.skole,
        ),
        201,
    )
    for headers, role, staff in (
        (c.nav, "veileder", stack.veileder),
        (c.skole, "kontaktlaerer", stack.teacher),
    ):
        await expect(
            c.http.post(
                f"/api/v1/participants/{participant}/assignments",
                json={"role": role, "staff_id": str(staff.id)},
                headers=headers,
            ),
            201,
        )
    for headers, discloser, recipient, category in (
        (c.nav, "nav", "skole", "contact"),
        (c.skole, "skole", "nav", "messages"),
    ):
        await expect(
            c.http.post(
                "/api/v1/consents",
                json={
                    "participant_id": participant,
                    "disclosers": [discloser],
                    "recipients": [recipient],
                    "purposes": ["oppfolging"],
                    "categories": [category],
                    "grantor": "participant",
                    "collection_method": "paper",
                    "evidence": "Signert skjema, arkivsak 2026/1",
                    "notice": {
                        "version": "samtykke-1",
                        "hash": "sha256:" + "ab" * 32,
                        "language": "nb",
                    },
                },
                headers=headers,
            ),
            201,
        )
    return participant


async def open_thread(c: Clients, participant: str) -> str:
    opened = await expect(
        c.http.post(
            "/api/v1/threads",
            json={
                "participant_id": participant,
                "purpose": "oppfolging",
                "to": {"role": "veileder"},
                "subject": "Oppfølging",
                "body": "Kan vi snakkes?",
            },
            headers=c.teacher,
        ),
        201,
    )
    return str(opened["id"])


def absence(day: int) -> dict[str, Any]:
    return {
        "type": "fravaer.registrert",
        "occurred_at": f"2026-09-{1 + day % 28:02d}T08:00:00+02:00",
        "payload": {"period_start": "2026-08-18", "period_end": "2026-08-31"},
        "source_system": "Visma InSchool",
    }


# --- the database, read directly -------------------------------------------------------------


async def column(url: str, statement: Any) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(statement)).scalars().all())
    finally:
        await engine.dispose()


async def outbox_and_log(stack: Stack) -> tuple[list[str], list[str], int]:
    """Every outbox event id of the three services, every id in the gateway's event log,
    and how many outbox events are not yet marked published."""
    written: list[str] = []
    unpublished = 0
    for name, model in OUTBOXES.items():
        url = stack.procs.database_url(name)
        written += await column(url, select(model.event_id))
        unpublished += (
            await column(
                url, select(func.count()).select_from(model).where(model.published_at.is_(None))
            )
        )[0]
    logged = await column(stack.procs.database_url("gateway"), select(EventRecord.event_id))
    return written, logged, unpublished


EVENTS_SETTLE_S = 30.0  # a relay's wait for an acknowledgement is 5 s; retries after


async def events_settled(stack: Stack) -> tuple[float, list[str], list[str]]:
    """Wait until every outbox event is marked published and is in the gateway's event
    log; the seconds it took, the outbox ids and the log's ids."""
    state = ""

    async def all_in_the_log() -> bool:
        nonlocal state
        written, logged, unpublished = await outbox_and_log(stack)
        missing = len(set(written) - set(logged))
        state = f"{unpublished} not published by their relays, {missing} not in the log"
        return unpublished == 0 and missing == 0

    settled = await poll(all_in_the_log, EVENTS_SETTLE_S, lambda: f"every event logged ({state})")
    written, logged, _ = await outbox_and_log(stack)
    return settled, written, logged


# --- a service killed during mixed load ------------------------------------------------------


@dataclass
class Outcome:
    kind: str  # register, timeline, message, read, list
    started: float  # time.monotonic()
    status: int  # 0: no answer within CLIENT_TIMEOUT_S; -1: the connection broke
    seconds: float
    problem: bool
    key: str | None = None  # a timeline write's Idempotency-Key; a registration's person
    created: str | None = None  # the id a 2xx write answered with
    detail: str | None = None  # a problem's detail

    @property
    def acknowledged(self) -> bool:
        return 200 <= self.status < 300


WRITES = ("register", "timeline", "message")


@dataclass
class Load:
    """A few clients, each repeating one kind of request through the gateway until told to
    stop, every answer noted."""

    c: Clients
    participant: str
    thread: str
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Every client until `stop`; a client that failed fails the run."""
        kinds: dict[str, Callable[[int], tuple[Awaitable[httpx.Response], str | None]]] = {
            "register": self._register,
            "timeline": self._timeline,
            "message": self._message,
            "read": self._read,
            "list": self._list,
        }
        async with asyncio.TaskGroup() as clients:
            for kind, request in kinds.items():
                clients.create_task(self._client(kind, request))

    async def _client(
        self, kind: str, request: Callable[[int], tuple[Awaitable[httpx.Response], str | None]]
    ) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            send, key = request(number)
            started = time.monotonic()
            try:
                response = await send
            except httpx.TimeoutException:
                outcome = Outcome(kind, started, 0, time.monotonic() - started, False, key)
            except httpx.TransportError:
                outcome = Outcome(kind, started, -1, time.monotonic() - started, False, key)
            else:
                outcome = Outcome(
                    kind,
                    started,
                    response.status_code,
                    time.monotonic() - started,
                    response.headers.get("content-type", "").startswith(PROBLEM),
                    key,
                )
                if outcome.acknowledged and kind in WRITES:
                    outcome.created = str(response.json()["id"])
                elif outcome.problem:
                    outcome.detail = response.json().get("detail")
            self.outcomes.append(outcome)
            await asyncio.sleep(PACE_S)

    def _register(self, number: int) -> tuple[Awaitable[httpx.Response], str]:
        national_id = next(_numbers)
        return self.register(national_id), national_id

    def register(self, national_id: str) -> Awaitable[httpx.Response]:
        """NAV registers a person (create-or-link: a retry answers with the same one)."""
        body = {"national_id": national_id, "name": "Ny Deltaker", "source_system": "Arena"}
        return self.c.http.post("/api/v1/participants", json=body, headers=self.c.nav)

    def _timeline(self, number: int) -> tuple[Awaitable[httpx.Response], str]:
        key = f"faults-{number}-{uuid.uuid4()}"
        return self.record(key), key

    def record(self, key: str) -> Awaitable[httpx.Response]:
        """A timeline write with an Idempotency-Key; its body follows from the key, so a
        retry sends the same."""
        return self.c.http.post(
            f"/api/v1/participants/{self.participant}/events",
            json=absence(int(key.split("-")[1])),
            headers={**self.c.skole, "Idempotency-Key": key},
        )

    def _message(self, number: int) -> tuple[Awaitable[httpx.Response], None]:
        url = f"/api/v1/threads/{self.thread}/messages"
        body = {"body": "Hei, en oppdatering."}
        return self.c.http.post(url, json=body, headers=self.c.teacher), None

    def _read(self, number: int) -> tuple[Awaitable[httpx.Response], None]:
        url = f"/api/v1/participants/{self.participant}"
        return self.c.http.get(url, headers=self.c.veileder), None

    def _list(self, number: int) -> tuple[Awaitable[httpx.Response], None]:
        """A route the gateway streams through (no participant data)."""
        return self.c.http.get("/api/v1/organisations", headers=self.c.nav), None


async def poll(
    condition: Callable[[], Awaitable[bool]], within: float, what: str | Callable[[], str]
) -> float:
    """Poll until `condition` holds; the seconds it took. Fails after `within` s, saying
    `what` (or what it returns then)."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > within:
            pytest.fail(f"{what() if callable(what) else what}: not within {within:g} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def staff_token(stack: Stack, http: httpx.AsyncClient) -> httpx.Response:
    """The JWT-bearer grant for the kontaktlærer (the gateway looks her up in the
    directory, in the participant service)."""
    tokens = Tokens(http, stack.gateway, STACK_SCOPES)
    return await http.post(
        "/oauth/token",
        data={
            "grant_type": JWT_BEARER,
            "assertion": tokens.assertion(stack.skole, str(stack.teacher.id)),
            "client_assertion_type": CLIENT_ASSERTION,
            "client_assertion": tokens.assertion(stack.skole, stack.skole.client_id),
            "scope": STAFF_SCOPES,
        },
    )


async def through_gateway(load: Load, victim: str) -> bool:
    """A request that needs the victim answers 2xx through the gateway."""
    if victim == "participant":
        response = await load.c.http.get(
            f"/api/v1/participants/{load.participant}", headers=load.c.veileder
        )
    else:
        response = await load.c.http.get("/api/v1/threads", headers=load.c.teacher)
    return response.status_code == 200


async def killed_during_load(
    stack: Stack, victims: tuple[tuple[str, float], ...]
) -> dict[str, Any]:
    """Mixed load through the gateway while each victim in turn is stalled (SIGSTOP) for
    its seconds, if any, then killed (SIGKILL) and started again; then the refused timeline
    writes retried with their keys, as a client would."""
    async with gateway_client(stack) as http:
        c = await Clients.of(stack, http)
        participant = await followed_up(stack, c)
        thread = await open_thread(c, participant)
        load = Load(c, participant, thread)
        running = asyncio.create_task(load.run())
        recovery: dict[str, float] = {}
        outage: dict[str, float] = {}
        healthy: list[tuple[float, float]] = []  # from recovery until the next fault
        token_refusals: list[httpx.Response] = []
        try:
            healthy_since = time.monotonic()
            for victim, stalled_for in victims:
                await asyncio.sleep(0.5)  # load on a healthy stack
                down_since, went_down = len(load.outcomes), time.monotonic()
                healthy.append((healthy_since, went_down))
                if stalled_for:
                    stack.procs.stall(victim)
                    await asyncio.sleep(stalled_for)
                await asyncio.to_thread(stack.procs.kill, victim)
                if victim == "participant":
                    token_refusals.append(await staff_token(stack, http))
                # The load goes on while it starts again (seconds: a Python process).
                await asyncio.to_thread(stack.procs.start_again, victim)
                recovery[victim] = await poll(
                    partial(through_gateway, load, victim),
                    RECOVERY_BOUND_S,
                    f"the gateway serving again after {victim} came back",
                )
                healthy_since = time.monotonic()
                outage[victim] = healthy_since - went_down
                during = load.outcomes[down_since:]
                assert any(o.status == 503 for o in during), f"no 503 while {victim} was down"
            await asyncio.sleep(0.5)  # load after recovery
            healthy.append((healthy_since, time.monotonic()))
        finally:
            load.stop.set()
            await running
        # A client retries what was refused: a timeline write with its Idempotency-Key, a
        # registration as it was (create-or-link by the person).
        retries = {"timeline": load.record, "register": load.register}
        retried = [o for o in load.outcomes if o.kind in retries and not o.acknowledged]
        retry_statuses: Counter[int] = Counter()
        for batch in range(0, len(retried), 8):
            answered = await asyncio.gather(
                *(retries[o.kind](o.key) for o in retried[batch : batch + 8] if o.key)
            )
            assert all(r.status_code in (200, 201) for r in answered), [
                problem_of(r) for r in answered
            ]
            retry_statuses.update(r.status_code for r in answered)
        return {
            "outcomes": load.outcomes,
            "recovery": recovery,
            "outage": outage,
            "healthy": healthy,
            "token_refusals": token_refusals,
            "participant": participant,
            "retried": len(retried),
            # 200: the first attempt had been recorded after all (its answer was lost).
            "retried_found_recorded": retry_statuses[200],
        }


async def found_afterwards(
    stack: Stack, participant: str
) -> tuple[dict[str, set[str]], Counter[str]]:
    """The ids each kind of write left in its service's database, and how often each
    Idempotency-Key is recorded for the participant."""
    participants = stack.procs.database_url("participant")
    found = {
        "register": await column(participants, select(Participant.id)),
        "timeline": await column(participants, select(Event.id)),
        "message": await column(stack.procs.database_url("messaging"), select(Message.id)),
    }
    keys = await column(
        participants,
        select(Event.idempotency_key).where(Event.participant_id == uuid.UUID(participant)),
    )
    return {kind: {str(i) for i in ids} for kind, ids in found.items()}, Counter(keys)


def test_a_service_killed_during_load_gets_quick_503s_and_loses_no_acknowledged_write(
    stack: Stack,
) -> None:
    started = time.monotonic()
    # The participant service killed outright; on SQLite also messaging, stalled past the
    # gateway's upstream timeout first, so that requests to it wait for the timeout instead
    # of being refused (that path is the gateway's, the same on either database).
    victims: tuple[tuple[str, float], ...] = (("participant", 0.0),)
    if stack.backend == "sqlite":
        victims += (("messaging", UPSTREAM_TIMEOUT_S + 1.0),)
    participants = stack.procs.database_url("participant")
    before = len(asyncio.run(column(participants, select(Participant.id))))
    result = asyncio.run(killed_during_load(stack, victims))
    outcomes: list[Outcome] = result["outcomes"]
    found, keys = asyncio.run(found_afterwards(stack, result["participant"]))
    # The killed services' relays (or, without NATS, the gateway's pulls) lose no event.
    settled, written, logged = asyncio.run(events_settled(stack))

    acknowledged = {
        kind: {o.created for o in outcomes if o.kind == kind and o.acknowledged} for kind in WRITES
    }
    lost = {kind: ids - found[kind] for kind, ids in acknowledged.items()}
    refused = [o for o in outcomes if o.status == 503]
    longest = max(o.seconds for o in outcomes)
    after_recovery = [  # sent after a recovery, answered before the next fault
        o
        for o in outcomes
        if any(
            start <= o.started and o.started + o.seconds < end for start, end in result["healthy"]
        )
    ]
    report(
        f"service_killed[{stack.backend}]",
        {
            "victims": ", ".join(f"{n} (stalled {t:g} s, killed)" for n, t in victims),
            "sent": len(outcomes),
            "acknowledged": sum(o.acknowledged for o in outcomes),
            "refused_503": len(refused),
            "other": sum(not o.acknowledged and o.status != 503 for o in outcomes),
            "writes_acknowledged": sum(len(ids) for ids in acknowledged.values()),
            "found": sum(len(ids & found[kind]) for kind, ids in acknowledged.items()),
            "lost": sum(len(ids) for ids in lost.values()),
            "refused_writes_retried": result["retried"],
            "of_which_had_committed": result["retried_found_recorded"],
            "longest_answer_s": round(longest, 2),
            "longest_503_s": round(max((o.seconds for o in refused), default=0.0), 2),
            "outage_s": {k: round(v, 2) for k, v in result["outage"].items()},
            "recovery_after_restart_s": {k: round(v, 2) for k, v in result["recovery"].items()},
            "events_written": len(written),
            "events_lost": len(set(written) - set(logged)),
            "events_settled_after_s": round(settled, 2),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert after_recovery, "no request was answered between a recovery and the next fault"
    statuses = Counter(o.status for o in outcomes)
    assert set(statuses) <= {200, 201, 503}, statuses  # no 500, no hang (0), no broken (-1)
    assert all(o.problem for o in refused), "a 503 that is not a problem document"
    assert longest < ANSWER_BOUND_S, f"an answer took {longest:.1f} s"
    # A staff token needs the directory: refused with a 503 problem while it is down.
    for refusal in result["token_refusals"]:
        assert refusal.status_code == 503, refusal.status_code
        assert refusal.headers["content-type"].startswith(PROBLEM)
    # Recovered without restarting the gateway: once a request through it succeeded
    # again, every one did.
    assert all(o.acknowledged for o in after_recovery), [
        (o.kind, o.status, o.detail, round(o.started - started, 2), round(o.seconds, 2))
        for o in after_recovery
        if not o.acknowledged
    ] + [(round(a - started, 2), round(b - started, 2)) for a, b in result["healthy"]]
    assert all(not ids for ids in lost.values()), {k: len(v) for k, v in lost.items()}
    # One participant per person registered (and the one followed up), retried or not.
    persons = {o.key for o in outcomes if o.kind == "register"}
    assert len(found["register"]) - before == len(persons) + 1
    # Every key sent is recorded exactly once: a refused write retried with its key is
    # not recorded twice, even where the refused attempt had committed.
    assert set(keys) - {None} == {o.key for o in outcomes if o.kind == "timeline"}
    assert all(n == 1 for k, n in keys.items() if k is not None)


# --- the consent service down ----------------------------------------------------------------


@dataclass
class Answer:
    what: str
    status: int
    seconds: float
    problem: bool
    body: Any


async def timed(what: str, call: Awaitable[httpx.Response]) -> Answer:
    started = time.monotonic()
    response = await call
    seconds = time.monotonic() - started
    problem = response.headers.get("content-type", "").startswith(PROBLEM)
    body = response.json() if response.content else None
    return Answer(what, response.status_code, seconds, problem, body)


def withheld(body: dict[str, Any]) -> dict[str, str]:
    return {w["field"]: w["reason"] for w in body.get("withheld", [])}


async def consent_down(stack: Stack) -> dict[str, Any]:
    async with gateway_client(stack) as http:
        c = await Clients.of(stack, http)
        participant = await followed_up(stack, c)
        url = f"/api/v1/participants/{participant}"
        before = await expect(http.get(url, headers=c.teacher), 200)
        assert "email" in before, "the consent should release NAV's e-mail to the school"
        threads_before = await expect(http.get("/api/v1/threads", headers=c.veileder), 200)

        # Stalled first: the grants are waited for until the upstream timeout, then the
        # decision goes on without them.
        stack.procs.stall("consent")
        stalled = await timed("teacher reads, consent stalled", http.get(url, headers=c.teacher))
        await asyncio.to_thread(stack.procs.kill, "consent")
        new_thread = {
            "participant_id": participant,
            "purpose": "oppfolging",
            "to": {"role": "veileder"},
            "subject": "Oppfølging",
            "body": "Kan vi snakkes?",
        }
        answers_ = [
            stalled,
            await timed("teacher reads the participant", http.get(url, headers=c.teacher)),
            await timed("NAV reads the participant", http.get(url, headers=c.nav)),
            await timed(
                "teacher lists assignments", http.get(f"{url}/assignments", headers=c.teacher)
            ),
            await timed(
                "school records an absence",
                http.post(
                    f"{url}/events",
                    json=absence(1),
                    headers={**c.skole, "Idempotency-Key": f"consent-down-{uuid.uuid4()}"},
                ),
            ),
            await timed(
                "teacher reads the timeline", http.get(f"{url}/timeline", headers=c.teacher)
            ),
            await timed(
                "NAV lists organisations", http.get("/api/v1/organisations", headers=c.nav)
            ),
            await timed("teacher reads the inbox", http.get("/api/v1/threads", headers=c.teacher)),
            await timed(
                "teacher messages the veileder",
                http.post("/api/v1/threads", json=new_thread, headers=c.teacher),
            ),
            await timed("school lists the consents", http.get(f"{url}/consents", headers=c.skole)),
        ]
        await asyncio.to_thread(stack.procs.start_again, "consent")

        async def released_again() -> bool:
            response = await http.get(url, headers=c.teacher)
            return response.status_code == 200 and "email" in response.json()

        recovery = await poll(released_again, RECOVERY_BOUND_S, "the e-mail released again")
        threads_after = await expect(http.get("/api/v1/threads", headers=c.veileder), 200)
    return {
        "participant": participant,
        "answers": {a.what: a for a in answers_},
        "recovery": recovery,
        "threads": (threads_before, threads_after),
    }


async def audited_reasons(stack: Stack, participant: str, staff_id: str) -> list[dict[str, str]]:
    """The withheld fields and their reasons of each audit entry about the participant made
    for this staff member, oldest first (read from the gateway's database)."""
    contents = await column(
        stack.procs.database_url("gateway"),
        select(AuditEntry.content)
        .where(AuditEntry.participant_id == participant)
        .order_by(AuditEntry.seq),
    )
    entries = [json.loads(content) for content in contents]
    return [
        {w["field"]: w["reason"] for w in entry["withheld"]}
        for entry in entries
        if entry["caller"].get("staff_id") == staff_id
    ]


def test_with_the_consent_service_down_gated_fields_are_withheld_and_the_rest_served(
    stack: Stack,
) -> None:
    started = time.monotonic()
    result = asyncio.run(consent_down(stack))
    a: dict[str, Answer] = result["answers"]

    report(
        f"consent_down[{stack.backend}]",
        {
            "sent": len(a),
            "served_2xx": sum(200 <= x.status < 300 for x in a.values()),
            "refused_503": sum(x.status == 503 for x in a.values()),
            "errors_500": sum(x.status >= 500 and x.status != 503 for x in a.values()),
            "withheld_as": withheld(a["teacher reads the participant"].body).get("email"),
            "audited_as": "consent_unavailable",
            "longest_answer_s": round(max(x.seconds for x in a.values()), 2),
            "recovery_s": round(result["recovery"], 2),
            "seconds": round(time.monotonic() - started, 1),
        },
    )

    assert all(x.status != 500 for x in a.values()), {k: x.status for k, x in a.items()}
    assert all(x.seconds < ANSWER_BOUND_S for x in a.values())
    # Fail closed: the school's staff get the participant without NAV's contact details,
    # told only that they are not shared (the audit log has the precise reason).
    for what in ("teacher reads, consent stalled", "teacher reads the participant"):
        teacher = a[what]
        assert teacher.status == 200, (what, teacher.status)
        assert teacher.body["name"] and not {"email", "phone"} & set(teacher.body), what
        assert withheld(teacher.body)["email"] == "not_shared", what
    reasons = asyncio.run(audited_reasons(stack, result["participant"], str(stack.teacher.id)))
    # Only the two reads during the fault withheld the e-mail, each for the precise reason.
    email = [r["participant.email"] for r in reasons if "participant.email" in r]
    assert email == 2 * ["consent_unavailable"], email
    # NAV's own values, the school's own records, and routes that need no consent.
    nav = a["NAV reads the participant"]
    assert nav.status == 200 and {"email", "phone"} <= set(nav.body), withheld(nav.body)
    assignments = a["teacher lists assignments"]
    assert assignments.status == 200
    assert any(
        i["orgnr"] == stack.skole.orgnr and i.get("role") == "kontaktlaerer"
        for i in assignments.body["items"]
    )
    for what in ("school records an absence",):
        assert a[what].status == 201, (what, a[what].status)
    for what in (
        "teacher reads the timeline",
        "NAV lists organisations",
        "teacher reads the inbox",
    ):
        assert a[what].status == 200, (what, a[what].status)
    assert any(
        i["type"] == "fravaer.registrert" for i in a["teacher reads the timeline"].body["items"]
    )
    # What needs a consent to be read now is refused with a 503 problem: nothing is sent.
    for what in ("teacher messages the veileder", "school lists the consents"):
        assert a[what].status == 503 and a[what].problem, (what, a[what].status)
    before, after = result["threads"]
    assert len(after["items"]) == len(before["items"])


# --- the NATS server restarted -----------------------------------------------------------------


async def stream_count(nats_url: str, stream: str) -> int:
    client = await nats.connect(nats_url)
    try:
        info = await client.jetstream().stream_info(stream)
        return int(info.state.messages)
    finally:
        await client.close()


async def nats_restarted(stack: Stack) -> dict[str, Any]:
    written_before = len((await outbox_and_log(stack))[0])
    async with gateway_client(stack) as http:
        c = await Clients.of(stack, http)
        participant = await followed_up(stack, c)
        thread = await open_thread(c, participant)
        statuses: Counter[int] = Counter()
        stop = asyncio.Event()
        turn = asyncio.Lock()  # held by each round of writes; taken to pause them

        async def produce() -> None:
            number = 0
            while not stop.is_set():
                number += 1
                async with turn:
                    recorded = await http.post(
                        f"/api/v1/participants/{participant}/events",
                        json=absence(number),
                        headers={**c.skole, "Idempotency-Key": f"nats-{uuid.uuid4()}"},
                    )
                    sent = await http.post(
                        f"/api/v1/threads/{thread}/messages",
                        json={"body": "Hei igjen."},
                        headers=c.teacher,
                    )
                statuses.update((recorded.status_code, sent.status_code))
                await asyncio.sleep(0.03)

        producer = asyncio.create_task(produce())
        try:
            await asyncio.sleep(0.5)  # events flowing
            # Stalled first (what a publish sent now waits for never comes), then killed.
            stack.procs.stall("nats")
            await asyncio.sleep(0.5)
            await asyncio.to_thread(stack.procs.kill, "nats")
            await asyncio.sleep(0.5)  # written while NATS is away
            # A service restarted meanwhile (a deployment, a crash) starts and serves
            # without NATS; the writes pause while it is down, not to count its 503s.
            async with turn:
                await asyncio.to_thread(stack.procs.kill, "participant")
                restarted = time.monotonic()
                await asyncio.to_thread(stack.procs.start_again, "participant")
                restarted = time.monotonic() - restarted
            await asyncio.sleep(0.5)  # written to it while NATS is still away
            await asyncio.to_thread(stack.procs.start_again, "nats")
            await asyncio.sleep(0.5)  # and after, on the same store
        finally:
            stop.set()
            await producer

    settled, written, logged = await events_settled(stack)
    assert stack.nats_url is not None
    in_stream = await stream_count(stack.nats_url, stack.settings["BROEN_NATS_STREAM"])
    return {
        "statuses": statuses,
        "produced": len(written) - written_before,
        "written": written,
        "logged": logged,
        "in_stream": in_stream,
        "settled": settled,
        "restarted": restarted,
    }


def test_a_nats_restart_loses_no_event_and_logs_none_twice(stack: Stack) -> None:
    if stack.nats_url is None:
        pytest.skip("no nats-server installed")
    started = time.monotonic()
    result = asyncio.run(nats_restarted(stack))

    statuses: Counter[int] = result["statuses"]
    written, logged = result["written"], result["logged"]
    lost = set(written) - set(logged)
    duplicates = len(logged) - len(set(logged))
    report(
        f"nats_restarted[{stack.backend}]",
        {
            "writes": sum(statuses.values()),
            "events_produced": result["produced"],
            "events_in_outboxes": len(written),
            "found_in_log": len(set(written) & set(logged)),
            "lost": len(lost),
            "duplicates_in_log": duplicates,
            "stream_messages": result["in_stream"],
            "service_restarted_without_nats_in_s": round(result["restarted"], 2),
            "settled_after_s": round(result["settled"], 2),
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    assert set(statuses) == {201}, statuses  # writes never wait for NATS (the outbox)
    assert result["produced"] > 0
    assert lost == set() and duplicates == 0
    # JetStream kept each once too (the relay's repeats carry the same Nats-Msg-Id).
    assert result["in_stream"] == len(set(written))
