"""PostgreSQL restarted under load (issue 9, Faults): the four components run as real
processes against a throwaway cluster this file creates (never the machine's server),
clients keep writing and reading through the gateway, and the cluster is stopped — with
`pg_ctl stop -m fast` (sessions ended cleanly) and with `-m immediate` (a crash: recovery
from the WAL) — held down until every kind of request has met it, and started again.

What holds: no answer is a 500 (from the gateway, nor from any service behind it); what
is refused while the database is down is a 503 problem document, answered within a bound
derived from the configured timeouts; every kind of request succeeds again soon after the
database is back, without restarting any Broen process; the outboxes drain again; and
every write that was acknowledged with a 2xx is in the databases afterwards.

The figures (sent, acknowledged, refused, found, lost, the longest answer during the
outage, the time to recover) are printed and written to var/reliability/postgres_restart.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from stdnum.no import fodselsnummer

from bench.common import ROOT, Processes
from bench.events import EVENT_TYPE, PAYLOAD
from bench.messaging import (
    CLIENT_ASSERTION,
    Config,
    Stack,
    Tokens,
    enrol,
    new_org,
    open_threads,
    start_components,
)
from broen_cli.dev import synthetic_national_id
from gateway.settings import GatewaySettings
from shared.db import CONNECT_TIMEOUT_SECONDS, POOL_TIMEOUT_SECONDS
from shared.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from tests.system.real_stack import (
    Cluster,
    create_databases,
    postgres_bin,
    stopped_on_sigterm,
    throwaway_cluster,
)

pytestmark = pytest.mark.slow

NAV, SKOLE = "889640782", "310123455"
SCOPES = ("participants:read", "participants:write", "events:write", "consents:write", "messages")
PARTICIPANTS = 4  # enrolled before the load: assigned, with consent, one thread each
RESULTS = ROOT / "var" / "reliability" / "postgres_restart.json"

# Every bound derives from the configured timeouts. A gateway answer waits on at most a
# few upstream calls one after another (read the thread, the birth date and the grants,
# then send), each bounded by the gateway's upstream timeout; its own database (tokens,
# the audit log) makes it wait at most the connect timeout and the pool timeout. Generous:
# four upstream calls, a connection opened and a pool wait.
UPSTREAM_TIMEOUT_S = float(GatewaySettings.model_fields["upstream_timeout_seconds"].default)
ANSWER_BOUND_S = 4 * UPSTREAM_TIMEOUT_S + CONNECT_TIMEOUT_SECONDS + POOL_TIMEOUT_SECONDS
# Once PostgreSQL accepts connections, a pooled connection found dead is replaced at its
# next checkout (pre-ping): within two answer bounds every kind of request gets through.
RECOVERY_BOUND_S = 2 * ANSWER_BOUND_S
HOLD_MIN_S = 1.0  # the database stays down at least this long, and until every kind
HOLD_MAX_S = 4.0  # of request has met the outage, or this long at most
REFUSED_PAUSE_S = 0.05  # a refused client waits this long before it tries again
OUTBOX_BOUND_S = 30.0


def small_pools() -> dict[str, str]:
    # Small pools: four components share the throwaway cluster's max_connections.
    return {
        f"BROEN_{component}_DATABASE_POOL_SIZE": "5"
        for component in ("GATEWAY", "PARTICIPANT", "CONSENT", "MESSAGING")
    }


# --- the running system -------------------------------------------------------------------


@dataclass
class World:
    stack: Stack
    cluster: Cluster
    procs: Processes
    urls: dict[str, str]  # each component's database (SQLAlchemy URLs)
    base: dict[str, str]  # each component's http://host:port
    participants: list[str]
    threads: list[str]
    fresh_ids: Iterator[str]  # national ids not registered yet


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if postgres_bin() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true requires PostgreSQL's server binaries (initdb, pg_ctl)")
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed")
    workdir = tmp_path_factory.mktemp("faults-postgres")
    nav = new_org(NAV, "nav", "faults-nav", "nav-1")
    skole = new_org(SKOLE, "skole", "faults-skole", "vgs-1")
    procs = Processes()
    with stopped_on_sigterm(), throwaway_cluster(workdir / "postgres.log") as cluster:
        try:
            urls = create_databases(cluster)
            running = start_components(
                procs,
                workdir,
                urls,
                orgs=(nav, skole),
                scopes=SCOPES,
                env=small_pools(),
            )
            stack = Stack.of(running, nav, skole)
            participants, threads = asyncio.run(_enrol(stack))
            # What set-up wrote goes to disk now, not in the first stop's checkpoint.
            asyncio.run(cluster.execute("CHECKPOINT"))
            yield World(
                stack,
                cluster,
                procs,
                urls,
                running.base,
                participants,
                threads,
                fresh_national_ids(),
            )
        finally:
            procs.stop_all()


def fresh_national_ids() -> Iterator[str]:
    """Synthetic fødselsnumre with valid check digits, born in the 1990s: none of them is
    among the enrolled participants' (born from 2001 on)."""
    born = date(1990, 1, 1)
    while True:
        for individual in range(0, 500):
            candidate = synthetic_national_id(f"{born:%d%m%y}{individual:03d}")
            if fodselsnummer.is_valid(candidate):
                yield candidate
        born += timedelta(days=1)


async def _enrol(stack: Stack) -> tuple[list[str], list[str]]:
    """Participants registered by both, the veileder and the kontaktlærer assigned, the
    school's consent for messages to NAV, and a thread each from the kontaktlærer."""
    config = Config(
        duration=0,
        warmup=0,
        rounds=1,
        rates=(1.0,),
        backends=("postgresql",),
        participants=PARTICIPANTS,
        threads_each=1,
        setup_concurrency=PARTICIPANTS,
        inbox_requests=0,
        visible_every=1,
    )
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=30) as http:
        tokens = Tokens(http, stack.issuer, SCOPES)
        participants, _ = await enrol(config, stack, http, tokens, False)
        threads, _ = await open_threads(config, stack, http, tokens, participants, False)
    return participants, [thread for each in threads for thread in each]


# --- the load -------------------------------------------------------------------------------


@dataclass
class Answer:
    kind: str
    started: float  # time.monotonic()
    seconds: float
    status: int  # 0: no answer within the client's timeout, or the connection failed
    problem_type: str | None = None
    problem_document: bool = False


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)
    # What each acknowledged write created: ids by table.
    participants: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    messages: set[str] = field(default_factory=set)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def acked(self, kind: str, after: float = 0.0) -> int:
        return sum(1 for a in self.answers if a.kind == kind and ok(a) and a.started >= after)

    def refused(self, kind: str, after: float = 0.0) -> int:
        return sum(
            1 for a in self.answers if a.kind == kind and a.status == 503 and a.started >= after
        )


def ok(answer: Answer) -> bool:
    return 200 <= answer.status < 300


KINDS = ("token", "register", "timeline", "message", "read_card", "read_inbox")
WRITES = ("register", "timeline", "message")


async def _call(
    load: Load, kind: str, http: httpx.AsyncClient, send: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response | None:
    started = time.monotonic()
    try:
        response = await send()
    except httpx.HTTPError:
        load.answers.append(Answer(kind, started, time.monotonic() - started, 0))
        return None
    seconds = time.monotonic() - started
    answer = Answer(kind, started, seconds, response.status_code)
    if response.status_code >= 400:
        answer.problem_document = response.headers.get("content-type", "").startswith(
            PROBLEM_MEDIA_TYPE
        )
        if answer.problem_document:
            answer.problem_type = str(response.json().get("type"))
    load.answers.append(answer)
    return response


async def _client(
    load: Load, kind: str, http: httpx.AsyncClient, step: Callable[[], Awaitable[bool]]
) -> None:
    """Closed loop: one request after the other until told to stop; a short pause after a
    refusal (a client honouring Retry-After would wait longer)."""
    while not load.stop.is_set():
        if not await step():
            await asyncio.sleep(REFUSED_PAUSE_S)


async def _drive(world: World, load: Load, during: Callable[[Load], Awaitable[None]]) -> None:
    stack = world.stack
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, timeout=ANSWER_BOUND_S + 5, limits=limits
    ) as http:
        tokens = Tokens(http, stack.issuer, SCOPES)
        # The load's own tokens before it starts (they live 300 s); a client of its own
        # asks the token endpoint (the gateway's database) for new ones throughout.
        nav = await tokens.headers(stack.nav, purpose=True)
        school = await tokens.headers(stack.skole, purpose=True)
        teacher = await tokens.headers(stack.skole, stack.teacher)
        veileder = await tokens.headers(stack.nav, stack.veileder)

        async def register() -> bool:
            national_id = next(world.fresh_ids)
            while not load.stop.is_set():  # a refused registration is sent again as it was
                response = await _call(
                    load,
                    "register",
                    http,
                    lambda: http.post(
                        "/api/v1/participants",
                        json={
                            "national_id": national_id,
                            "name": "Deltaker",
                            "source_system": "Arena",
                        },
                        headers=nav,
                    ),
                )
                if response is not None and response.status_code in (200, 201):
                    load.participants.add(str(response.json()["id"]))
                    return True
                await asyncio.sleep(REFUSED_PAUSE_S)
            return True

        counter = iter(range(10**9))

        async def record_event() -> bool:
            participant = world.participants[next(counter) % len(world.participants)]
            key = str(uuid.uuid4())
            body = {
                "type": EVENT_TYPE,
                "occurred_at": datetime.now(UTC).isoformat(),
                "payload": PAYLOAD,
                "source_system": "Arena",
            }
            while not load.stop.is_set():  # a refused push is sent again with its key
                response = await _call(
                    load,
                    "timeline",
                    http,
                    lambda: http.post(
                        f"/api/v1/participants/{participant}/events",
                        json=body,
                        headers={**nav, "Idempotency-Key": key},
                    ),
                )
                if response is not None and response.status_code in (200, 201):
                    load.events.add(str(response.json()["id"]))
                    return True
                await asyncio.sleep(REFUSED_PAUSE_S)
            return True

        async def send_message() -> bool:
            thread = world.threads[next(counter) % len(world.threads)]
            response = await _call(
                load,
                "message",
                http,
                lambda: http.post(
                    f"/api/v1/threads/{thread}/messages",
                    json={"body": "Kan vi ta en prat om oppfølgingen?"},
                    headers=teacher,
                ),
            )
            if response is not None and response.status_code == 201:
                load.messages.add(str(response.json()["id"]))
                return True
            return False

        async def read_card() -> bool:
            participant = world.participants[next(counter) % len(world.participants)]
            response = await _call(
                load,
                "read_card",
                http,
                lambda: http.get(f"/api/v1/participants/{participant}", headers=school),
            )
            return response is not None and response.status_code == 200

        async def read_inbox() -> bool:
            response = await _call(
                load, "read_inbox", http, lambda: http.get("/api/v1/threads", headers=veileder)
            )
            return response is not None and response.status_code == 200

        async def fetch_token() -> bool:
            form = {
                "grant_type": "client_credentials",
                "client_assertion_type": CLIENT_ASSERTION,
                "client_assertion": tokens.assertion(stack.nav, stack.nav.client_id),
                "scope": "participants:read",
            }
            response = await _call(
                load, "token", http, lambda: http.post("/oauth/token", data=form)
            )
            return response is not None and response.status_code == 200

        steps = {
            "token": fetch_token,
            "register": register,
            "timeline": record_event,
            "message": send_message,
            "read_card": read_card,
            "read_inbox": read_inbox,
        }
        clients = [
            asyncio.create_task(_client(load, kind, http, step), name=f"client-{kind}-{n}")
            for kind, step in steps.items()
            for n in range(2)
        ]
        try:
            await during(load)
        finally:
            load.stop.set()
            await asyncio.gather(*clients)


async def _until(deadline_s: float, check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# --- what is found afterwards ---------------------------------------------------------------


async def _connect(url: str) -> asyncpg.Connection:
    """asyncpg itself, to a component's database (`url` is SQLAlchemy's)."""
    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)


async def _found(url: str, table: str, ids: set[str]) -> set[str]:
    connection = await _connect(url)
    try:
        rows = await connection.fetch(
            f"SELECT id::text FROM {table} WHERE id = ANY($1::uuid[])",  # noqa: S608 - fixed names
            [uuid.UUID(i) for i in ids],
        )
    finally:
        await connection.close()
    return {row[0] for row in rows}


async def _pending_events(url: str) -> int:
    connection = await _connect(url)
    try:
        return int(
            await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        )
    finally:
        await connection.close()


def _server_errors(base: dict[str, str]) -> dict[str, float]:
    """5xx other than 503 each component counted (its own /metrics): a service's 500 would
    reach a caller as the gateway's 503, so the gateway's answers alone would hide it."""
    errors: dict[str, float] = {}
    for component, url in base.items():
        text = httpx.get(f"{url}/metrics", timeout=10).text
        errors[component] = sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "broen_http_requests_total"
            and sample.labels.get("status", "").startswith("5")
            and sample.labels.get("status") != "503"
        )
    return errors


# --- the test -------------------------------------------------------------------------------

FIGURES: dict[str, Any] = {}


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_under_load_loses_no_acknowledged_write(world: World, mode: str) -> None:
    marks: dict[str, float] = {}

    async def outage(load: Load) -> None:
        # Before: every kind of request goes through.
        if not await _until(RECOVERY_BOUND_S, lambda: all(load.acked(k) >= 3 for k in KINDS)):
            return
        marks["down"] = time.monotonic()
        await asyncio.to_thread(world.cluster.stop, mode)
        stopped = marks["stopped"] = time.monotonic()
        # Down until every kind of request has met the outage (at least HOLD_MIN_S).
        await asyncio.sleep(HOLD_MIN_S)
        await _until(HOLD_MAX_S - HOLD_MIN_S, lambda: all(load.refused(k, stopped) for k in KINDS))
        marks["starting"] = time.monotonic()
        await asyncio.to_thread(world.cluster.start)
        marks["up"] = time.monotonic()
        if await _until(RECOVERY_BOUND_S, lambda: all(load.acked(k, marks["up"]) for k in KINDS)):
            marks["recovered"] = time.monotonic()
            # And it keeps going.
            await _until(
                RECOVERY_BOUND_S,
                lambda: all(load.acked(k, marks["recovered"]) >= 3 for k in KINDS),
            )

    load = Load()
    asyncio.run(_drive(world, load, outage))
    assert "down" in marks, f"the load did not get going before the fault: {_after(load, 0)}"
    assert "recovered" in marks, (
        f"not every kind of request succeeded within {RECOVERY_BOUND_S:g} s of PostgreSQL "
        f"accepting connections again (acknowledged, refused): {_after(load, marks['up'])}"
    )

    drained = asyncio.run(_outboxes_drained(world))
    created = {"register": load.participants, "timeline": load.events, "message": load.messages}
    found = {
        "register": asyncio.run(
            _found(world.urls["participant"], "participants", created["register"])
        ),
        "timeline": asyncio.run(_found(world.urls["participant"], "events", created["timeline"])),
        "message": asyncio.run(_found(world.urls["messaging"], "messages", created["message"])),
    }
    figures = _figures(mode, load, marks, found, created)
    figures["server_errors_counted_by_components"] = _server_errors(world.base)
    FIGURES[mode] = figures
    _write(FIGURES)
    print(f"\nPostgreSQL stopped (-m {mode}) under load and started again:")
    print(json.dumps(figures, indent=1))

    wrong = sorted(
        {
            (a.kind, a.status, a.problem_type)
            for a in load.answers
            if not ok(a) and not (a.status == 503 and a.problem_document)
        },
        key=str,
    )
    assert not wrong, f"answers other than a 2xx or a 503 problem (kind, status, type): {wrong}"
    # Recovered on their own: the same processes as before, none of them restarted.
    assert [s.process.poll() for s in world.procs.servers] == [None] * 4
    assert {s.name: s.pid for s in world.procs.servers} == world.stack.pids
    assert figures["server_errors_counted_by_components"] == dict.fromkeys(world.base, 0.0)
    assert figures["refused_503"] > 0, "no request met the outage"
    assert figures["longest_answer_during_outage_s"] <= ANSWER_BOUND_S
    # Every event recorded reaches the gateway: its outbox puller survived the outage.
    assert drained, f"outbox events still pending {OUTBOX_BOUND_S:g} s after the load"
    lost = {kind: figures["by_kind"][kind]["lost"] for kind in WRITES}
    assert lost == dict.fromkeys(WRITES, 0), f"acknowledged writes not found afterwards: {lost}"


async def _outboxes_drained(world: World) -> bool:
    deadline = time.monotonic() + OUTBOX_BOUND_S
    while True:
        pending = [
            await _pending_events(world.urls[c]) for c in ("participant", "consent", "messaging")
        ]
        if not any(pending):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


def _after(load: Load, since: float) -> dict[str, tuple[int, int]]:
    return {k: (load.acked(k, since), load.refused(k, since)) for k in KINDS}


def _figures(
    mode: str,
    load: Load,
    marks: dict[str, float],
    found: dict[str, set[str]],
    created: dict[str, set[str]],
) -> dict[str, Any]:
    # Answers to requests under way at any time from the stop until every kind of request
    # succeeded again.
    outage = [
        a
        for a in load.answers
        if a.started + a.seconds >= marks["down"] and a.started <= marks["recovered"]
    ]
    longest = max((a.seconds for a in outage), default=0.0)
    problem_types: dict[str, int] = {}
    for a in load.answers:
        if a.status == 503:
            name = (a.problem_type or "").removeprefix(PROBLEM_BASE)
            problem_types[name] = problem_types.get(name, 0) + 1
    per_kind: dict[str, Any] = {}
    for kind in KINDS:
        mine = [a for a in load.answers if a.kind == kind]
        per_kind[kind] = {
            "sent": len(mine),
            "acknowledged": sum(1 for a in mine if ok(a)),
            "refused_503": sum(1 for a in mine if a.status == 503),
            "other": sum(1 for a in mine if not ok(a) and a.status != 503),
        }
        if kind in WRITES:
            per_kind[kind]["created"] = len(created[kind])
            per_kind[kind]["found"] = len(found[kind])
            per_kind[kind]["lost"] = len(created[kind] - found[kind])
    writes = [per_kind[k] for k in WRITES]
    return {
        "mode": mode,
        "sent": sum(p["sent"] for p in per_kind.values()),
        "acknowledged": sum(p["acknowledged"] for p in per_kind.values()),
        "refused_503": sum(p["refused_503"] for p in per_kind.values()),
        "writes_acknowledged": sum(w["created"] for w in writes),
        "writes_found": sum(w["found"] for w in writes),
        "writes_lost": sum(w["lost"] for w in writes),
        "down_s": round(marks["up"] - marks["down"], 2),
        "pg_stop_s": round(marks["stopped"] - marks["down"], 2),
        "pg_start_s": round(marks["up"] - marks["starting"], 2),
        "longest_answer_during_outage_s": round(longest, 3),
        "answer_bound_s": ANSWER_BOUND_S,
        "recovered_after_up_s": round(marks["recovered"] - marks["up"], 2),
        "recovery_bound_s": RECOVERY_BOUND_S,
        "refused_by_problem_type": problem_types,
        "by_kind": per_kind,
    }


def _write(figures: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "test": "tests/system/test_faults_postgres.py",
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "restarts": figures,
    }
    partial = RESULTS.with_suffix(".json.partial")
    partial.write_text(json.dumps(document, indent=1) + "\n")
    partial.replace(RESULTS)
