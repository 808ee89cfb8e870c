"""`make bench` (messaging): message throughput and the inbox, through the gateway.

Starts the participant, consent and messaging services and the gateway as real processes
on loopback (`broen serve ...`, production mode) and builds a world through the API: NAV
and a school, each with an API client (private_key_jwt); a NAV veileder and a kontaktlærer
(staff tokens from the JWT-bearer grant); BENCH_PARTICIPANTS participants (120) registered
by both organisations, the veileder and the kontaktlærer assigned, and a consent the school
records for messages from the school to NAV about follow-up; then BENCH_THREADS_PER_
PARTICIPANT threads each (20: 2,400) opened by the kontaktlærer to "the veileder", at
BENCH_SETUP_CONCURRENCY (8) concurrent requests — timed, which gives the rate of
`POST /api/v1/threads`. Then it measures:

  * the inbox: the veileder's first page (`GET /api/v1/threads`, default limit 50 of the
    2,400 threads), BENCH_INBOX_REQUESTS (100) sequential requests at concurrency 1 through
    the gateway, and the same directly from the messaging service (Broen-Internal-Token,
    signed here as the gateway): median and p90 latency, CPU ms per request;
  * message throughput: replies by the kontaktlærer (`POST /api/v1/threads/{id}/messages`)
    offered open-loop at each rate of BENCH_RATES msg/s for BENCH_DURATION s after a
    BENCH_WARMUP s warm-up (discarded), round-robin over the participants and their
    threads. Right after each 201 the veileder reads her inbox for that participant
    (`GET /api/v1/threads?participant_id=...&limit=1`) until it shows the message (the
    thread with last_message_at >= the message's sent_at); send→visible is the time from
    starting the POST to that answer. The POST answers 201 only after its commit, so this
    is the send latency plus one inbox read. Per rate: achieved msg/s, send and
    send→visible p50/p99, errors, and the CPU ms per message of every process from
    /proc/<pid>/stat; then the highest rate sustained with send→visible p99 <= 100 ms.
    The goal's rate (200 msg/s), when the ladder reaches it without being overloaded there,
    is run again at once so that it is measured BENCH_ROUNDS times in all (3), for its
    median and spread (min–max); the inbox runs are BENCH_ROUNDS rounds too.

The figures also go to BENCH_RESULTS_DIR/messaging.json (default var/bench/) for
bench/report.py.

Runs on SQLite, and on PostgreSQL when one answers on 127.0.0.1:5432 (its databases are
created here and dropped at the end).

Environment: BENCH_DURATION (s per rate, default 8), BENCH_WARMUP (s, default 2),
BENCH_ROUNDS (3), BENCH_BACKENDS ("sqlite,postgresql"; default: both, PostgreSQL only when
reachable), BENCH_RATES ("10,25,50,100,200,300,400" msg/s), BENCH_PARTICIPANTS (120),
BENCH_THREADS_PER_PARTICIPANT (20), BENCH_SETUP_CONCURRENCY (8), BENCH_INBOX_REQUESTS (100),
BENCH_VISIBLE_EVERY (5: every 5th message is followed by the recipient's inbox read, as a
veileder reads her inbox now and then, not once per message sent to her; 1: every one).

Figures, not asserts: the goals in docs/PERFORMANCE.md (200 msg/s with send→inbox p99
<= 100 ms; the inbox's first page <= 20 ms median) are to be read off the report.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/messaging.py` puts bench/ first, not the root
    sys.path.insert(0, str(ROOT))

from joserfc import jwt  # noqa: E402
from joserfc.jwk import OKPKey  # noqa: E402
from stdnum.no import fodselsnummer  # noqa: E402

from bench.common import (  # noqa: E402
    LOOPBACK,
    NCPU,
    BenchError,
    Processes,
    Results,
    backends_from_env,
    broen_env,
    broen_executable,
    busy_pct,
    catch_signals,
    cpu_per,
    env_float,
    env_int,
    env_numbers,
    free_port,
    log,
    other_pct,
    pct,
    postgres_admin,
    rounds_from_env,
    run_cases,
    snapshot,
    spread,
    spread_text,
)
from bench.run import MIGRATIONS  # noqa: E402
from broen_cli.dev import synthetic_national_id  # noqa: E402
from services.participant.schemas import StaffRead  # noqa: E402
from shared.internal_auth import HEADER as INTERNAL_HEADER  # noqa: E402
from shared.internal_auth import CallerContext, InternalTokenSigner  # noqa: E402
from shared.keys import init_keys_dir, load_internal_signing_key  # noqa: E402
from shared.migrations import upgrade  # noqa: E402

T = TypeVar("T")

COMPONENTS = ("participant", "consent", "messaging", "gateway")  # start order
ALL_MIGRATIONS = {**MIGRATIONS, "messaging": ROOT / "services" / "messaging" / "migrations"}
NAV, SKOLE = "889640782", "310123455"  # synthetic organisation numbers (valid check digits)
SCOPES = (
    "participants:read",
    "participants:write",
    "consents:read",
    "consents:write",
    "messages",
)
STAFF_SCOPES = "participants:read messages"
PURPOSE = "oppfolging"
CLIENT_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_REFRESH_S = 200.0  # access tokens live 300 s
REQUEST_TIMEOUT_S = 10.0  # a slower answer is an error, not a latency sample
VISIBLE_TIMEOUT_S = 5.0  # a message not in the inbox this long after its 201 is an error
DRAIN_S = 15.0  # after the last offered send, wait this long for answers, then give up
MAX_CONNECTIONS = 64  # the load generator's pool; more in flight wait for a connection
GOAL_RATE = 200.0  # msg/s (docs/PERFORMANCE.md)
GOAL_P99_MS = 100.0
GOAL_INBOX_MS = 20.0  # median of the first page
SUSTAINED = 0.95  # achieved/offered at least this, or the rate is not sustained
OVERLOADED = 0.8  # below this achieved/offered (or visible p99 > 1 s) higher rates are skipped
BODY = "Hei! Kari har vært borte tre dager denne uka. Kan vi ta en prat om oppfølgingen?"


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    duration: float
    warmup: float
    rounds: int
    rates: tuple[float, ...]
    backends: tuple[str, ...]
    participants: int
    threads_each: int
    setup_concurrency: int
    inbox_requests: int
    visible_every: int

    @classmethod
    def from_env(cls) -> Config:
        rates = env_numbers("BENCH_RATES", "10,25,50,100,200,300,400")
        if not rates or min(rates) <= 0:
            raise BenchError("BENCH_RATES needs at least one positive rate")
        return cls(
            duration=max(env_float("BENCH_DURATION", 8.0), 1.0),
            warmup=max(env_float("BENCH_WARMUP", 2.0), 0.0),
            rounds=rounds_from_env(3),
            rates=tuple(sorted(rates)),
            backends=backends_from_env(),
            participants=env_int("BENCH_PARTICIPANTS", 120),
            threads_each=env_int("BENCH_THREADS_PER_PARTICIPANT", 20),
            setup_concurrency=env_int("BENCH_SETUP_CONCURRENCY", 8),
            inbox_requests=env_int("BENCH_INBOX_REQUESTS", 100),
            visible_every=env_int("BENCH_VISIBLE_EVERY", 5),
        )

    def settings(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "rounds": self.rounds,
            "rates": list(self.rates),
            "backends": list(self.backends),
            "participants": self.participants,
            "threads": self.participants * self.threads_each,
            "setup_concurrency": self.setup_concurrency,
            "inbox_requests": self.inbox_requests,
            "visible_every": self.visible_every,
            "load_generator": "asyncio+httpx in bench/messaging.py, open-loop, "
            f"at most {MAX_CONNECTIONS} connections",
        }


# --- helpers ----------------------------------------------------------------------------------


def national_ids(count: int) -> list[str]:
    """Synthetic fødselsnumre with valid check digits, adults born from 2001 on: every valid
    individual number of a day before the next day (a day holds a few hundred)."""
    found: list[str] = []
    born = date(2001, 1, 1)
    while len(found) < count:
        if born >= date.today() - timedelta(days=18 * 366):
            raise ValueError(f"cannot make {count} adults' national ids born from 2001 on")
        for individual in range(500, 1000):
            candidate = synthetic_national_id(f"{born:%d%m%y}{individual:03d}")
            if fodselsnummer.is_valid(candidate):
                found.append(candidate)
                if len(found) == count:
                    break
        born += timedelta(days=1)
    return found


def cpu_text(cpu: dict[str, float]) -> str:
    return " ".join(f"{SHORT.get(k, k)}={v:.2f}" for k, v in cpu.items())


SHORT = {
    "gateway": "gw",
    "participant": "part",
    "consent": "cons",
    "messaging": "msg",
    "postgres": "pg",
    "loadgen": "lg",
}


def _aware(moment: str) -> datetime:
    parsed = datetime.fromisoformat(moment)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- the stack --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Org:
    orgnr: str
    agency_type: str
    client_id: str
    key: OKPKey


@dataclass
class Stack:
    gateway_url: str
    messaging_url: str
    issuer: str
    keys_dir: Path
    nav: Org
    skole: Org
    veileder: StaffRead
    teacher: StaffRead
    pids: dict[str, int]

    @classmethod
    def of(cls, running: Components, nav: Org, skole: Org) -> Stack:
        """The four components as started, with the two organisations."""
        return cls(
            running.base["gateway"],
            running.base["messaging"],
            running.issuer,
            running.keys_dir,
            nav,
            skole,
            running.veileder,
            running.teacher,
            running.pids,
        )

    def internal_headers(self) -> dict[str, str]:
        """The veileder as the gateway hands her to the messaging service (a fresh 60 s
        token)."""
        signer = InternalTokenSigner("gateway", load_internal_signing_key(self.keys_dir, "gateway"))
        caller = CallerContext(
            kind="staff",
            client_id=self.nav.client_id,
            orgnr=self.nav.orgnr,
            agency_type=self.nav.agency_type,
            scopes=("messages",),
            staff_id=str(self.veileder.id),
            unit_id=str(self.veileder.unit_id),
            roles=tuple(self.veileder.roles),
        )
        return {INTERNAL_HEADER: signer.token_for("messaging", caller)}


async def _directory(database_url: str) -> tuple[StaffRead, StaffRead]:
    """Both organisations, a unit each, the veileder and the kontaktlærer."""
    from services.participant import directory, store
    from services.participant.schemas import StaffCreate, UnitCreate
    from shared.db import make_engine, make_sessionmaker

    engine = make_engine(database_url)
    try:
        sessions = make_sessionmaker(engine)
        async with sessions.begin() as session:
            for orgnr, name, agency_type in (
                (NAV, "NAV Bench", "nav"),
                (SKOLE, "Bench vgs", "skole"),
            ):
                await store.add_organisation(
                    session,
                    orgnr=orgnr,
                    name=name,
                    agency_type=agency_type,
                    county=None,
                    now=datetime.now(UTC),
                )
        async with sessions.begin() as session:
            nav_unit = await directory.add_unit(
                session, UnitCreate(orgnr=NAV, name="NAV Bench", kind="nav_kontor")
            )
            school_unit = await directory.add_unit(
                session, UnitCreate(orgnr=SKOLE, name="Vg1", kind="skole")
            )
        staff = []
        async with sessions.begin() as session:
            for orgnr, unit, role in (
                (NAV, nav_unit, "veileder"),
                (SKOLE, school_unit, "kontaktlaerer"),
            ):
                data = StaffCreate.model_validate(
                    {"orgnr": orgnr, "unit_id": unit.id, "name": f"Bench {role}", "roles": [role]}
                )
                staff.append(await directory.add_staff(session, data))
        return staff[0], staff[1]
    finally:
        await engine.dispose()


def _register_client(
    database_url: str, keys_dir: Path, issuer: str, org: Org, scopes: Sequence[str]
) -> None:
    from gateway.oauth import register_client
    from gateway.settings import GatewaySettings

    settings = GatewaySettings(database_url=database_url, keys_dir=keys_dir, issuer=issuer)
    asyncio.run(
        register_client(
            settings,
            client_id=org.client_id,
            orgnr=org.orgnr,
            agency_type=org.agency_type,
            scopes=list(scopes),
            jwks={"keys": [org.key.as_dict(private=False)]},
        )
    )


def new_org(orgnr: str, agency_type: str, client_id: str, kid: str) -> Org:
    return Org(
        orgnr, agency_type, client_id, OKPKey.generate_key("Ed25519", parameters={"kid": kid})
    )


@dataclass
class Components:
    """The four components running, with what the benchmarks need of their set-up."""

    base: dict[str, str]  # each component's http://host:port
    keys_dir: Path
    veileder: StaffRead
    teacher: StaffRead
    pids: dict[str, int]

    @property
    def issuer(self) -> str:
        return self.base["gateway"]


@contextmanager
def four_components(
    backend: str,
    procs: Processes,
    workdir: Path,
    *,
    orgs: Sequence[Org],
    scopes: Sequence[str],
    env: dict[str, str] | None = None,
) -> Iterator[Components]:
    """Databases (SQLite files, or PostgreSQL databases dropped afterwards), then the four
    components on them (`start_components`)."""
    created: list[str] = []
    try:
        urls: dict[str, str] = {}
        for component in COMPONENTS:
            if backend == "sqlite":
                urls[component] = f"sqlite+aiosqlite:///{workdir / f'{component}.db'}"
            else:
                name = f"bench_{component}_{secrets.token_hex(4)}"
                asyncio.run(postgres_admin(f'CREATE DATABASE "{name}"'))
                created.append(name)
                urls[component] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
            upgrade(ALL_MIGRATIONS[component], urls[component])
        yield start_components(procs, workdir, urls, orgs=orgs, scopes=scopes, env=env)
    finally:
        procs.stop_all()
        for name in created:
            try:
                asyncio.run(postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:
                log(f"could not drop database {name}: {exc}")


def start_components(
    procs: Processes,
    workdir: Path,
    urls: dict[str, str],
    *,
    orgs: Sequence[Org],
    scopes: Sequence[str],
    env: dict[str, str] | None = None,
) -> Components:
    """Keys, the directory's veileder and kontaktlærer, a client per organisation, and the
    four processes against the migrated databases at `urls` (`env` goes to all four). The
    processes are `procs`'s to stop."""
    keys_dir = workdir / "keys"
    init_keys_dir(keys_dir)
    veileder, teacher = asyncio.run(_directory(urls["participant"]))
    ports = {component: free_port() for component in COMPONENTS}
    base = {component: f"http://{LOOPBACK}:{port}" for component, port in ports.items()}
    for org in orgs:
        _register_client(urls["gateway"], keys_dir, base["gateway"], org, scopes)
    extra: dict[str, dict[str, str]] = {
        "messaging": {"BROEN_MESSAGING_PARTICIPANT_URL": base["participant"]},
        "gateway": {
            "BROEN_GATEWAY_PARTICIPANT_URL": base["participant"],
            "BROEN_GATEWAY_CONSENT_URL": base["consent"],
            "BROEN_GATEWAY_MESSAGING_URL": base["messaging"],
            "BROEN_GATEWAY_ISSUER": base["gateway"],
            "BROEN_GATEWAY_AUDIT_HEAD_FILE": str(workdir / "audit-head.json"),
        },
    }
    broen = broen_executable()
    pids: dict[str, int] = {}
    for component in COMPONENTS:
        prefix = f"BROEN_{component.upper()}_"
        component_env = broen_env(
            {
                "BROEN_KEYS_DIR": str(keys_dir),
                **(env or {}),
                prefix + "DATABASE_URL": urls[component],
                prefix + "PORT": str(ports[component]),
                prefix + "LOG_LEVEL": "WARNING",
                **extra.get(component, {}),
            }
        )
        server = procs.start(
            component, [broen, "serve", component], component_env, ports[component], workdir
        )
        pids[component] = server.pid
    return Components(base, keys_dir, veileder, teacher, pids)


@contextmanager
def messaging_stack(
    backend: str, procs: Processes, workdir: Path, scopes: Sequence[str] = SCOPES
) -> Iterator[Stack]:
    """Databases, keys, the four processes, both organisations, their clients and staff."""
    nav = new_org(NAV, "nav", "bench-nav", "nav-1")
    skole = new_org(SKOLE, "skole", "bench-skole", "vgs-1")
    with four_components(backend, procs, workdir, orgs=(nav, skole), scopes=scopes) as running:
        yield Stack.of(running, nav, skole)


# --- tokens -----------------------------------------------------------------------------------


class Tokens:
    """Access tokens by (client, staff), fetched at the gateway and refreshed before they
    expire: client_credentials for a system, the JWT-bearer grant for a staff member."""

    def __init__(
        self, http: httpx.AsyncClient, issuer: str, scopes: Sequence[str] = SCOPES
    ) -> None:
        self.http = http
        self.issuer = issuer
        self.scopes = " ".join(scopes)  # a system's; staff tokens get STAFF_SCOPES
        self._cache: dict[tuple[str, str | None], tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    def assertion(self, org: Org, subject: str) -> str:
        """A signed client assertion of the organisation's client, about `subject`."""
        now = int(time.time())
        claims = {
            "iss": org.client_id,
            "sub": subject,
            "aud": self.issuer,
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        return jwt.encode(
            {"alg": "Ed25519", "kid": org.key.kid}, claims, org.key, algorithms=["Ed25519"]
        )

    async def get(self, org: Org, staff: StaffRead | None = None) -> str:
        key = (org.client_id, str(staff.id) if staff else None)
        async with self._lock:
            cached = self._cache.get(key)
            if cached and time.monotonic() - cached[1] < TOKEN_REFRESH_S:
                return cached[0]
            form = {
                "grant_type": "client_credentials",
                "client_assertion_type": CLIENT_ASSERTION,
                "client_assertion": self.assertion(org, org.client_id),
                "scope": self.scopes,
            }
            if staff is not None:
                form.update(
                    grant_type=JWT_BEARER,
                    assertion=self.assertion(org, str(staff.id)),
                    scope=STAFF_SCOPES,
                )
            response = await self.http.post("/oauth/token", data=form)
            if response.status_code != 200:
                who = f"staff {staff.id}" if staff else "the system"
                raise BenchError(
                    f"POST /oauth/token for {org.client_id} ({who}) answered "
                    f"{response.status_code}: {response.text}"
                )
            token = str(response.json()["access_token"])
            self._cache[key] = (token, time.monotonic())
            return token

    def forget(self) -> None:
        self._cache.clear()

    async def headers(
        self, org: Org, staff: StaffRead | None = None, purpose: bool = False
    ) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {await self.get(org, staff)}"}
        if purpose:
            headers["Broen-Purpose"] = PURPOSE
        return headers


async def expect(call: Awaitable[httpx.Response], status: int, what: str) -> httpx.Response:
    response = await call
    if response.status_code != status:
        raise BenchError(f"{what} answered {response.status_code}: {response.text[:800]}")
    return response


async def bounded(concurrency: int, jobs: list[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run the jobs, at most `concurrency` at once, in order of the list; the first error
    cancels the rest."""
    results: dict[int, T] = {}
    pending = iter(enumerate(jobs))

    async def worker() -> None:
        for index, job in pending:
            results[index] = await job()

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, len(jobs))):
            group.create_task(worker())
    return [results[i] for i in range(len(jobs))]


# --- the world --------------------------------------------------------------------------------


@dataclass
class Phase:
    """A timed set-up phase: how many calls, how long, their latencies, CPU per call."""

    what: str
    count: int
    seconds: float
    latencies: list[float]
    cpu_ms: dict[str, float]

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


async def enrol(
    config: Config, stack: Stack, http: httpx.AsyncClient, tokens: Tokens, with_pg: bool
) -> tuple[list[str], Phase]:
    """Each participant: registered by NAV and the school, the veileder and the kontaktlærer
    assigned, the school's recorded consent for messages to NAV."""

    async def one(national_id: str, number: int) -> str:
        nav = await tokens.headers(stack.nav, purpose=True)
        school = await tokens.headers(stack.skole, purpose=True)
        registered = await expect(
            http.post(
                "/api/v1/participants",
                json={
                    "national_id": national_id,
                    "name": f"Deltaker {number}",
                    "source_system": "Arena",
                },
                headers=nav,
            ),
            201,
            "NAV's POST /api/v1/participants",
        )
        participant_id = str(registered.json()["id"])
        again = await expect(
            http.post(
                "/api/v1/participants",
                json={"national_id": national_id, "name": f"D. {number}", "source_system": "SIS"},
                headers=school,
            ),
            201,
            "the school's POST /api/v1/participants",
        )
        if str(again.json()["id"]) != participant_id:
            raise BenchError("the school's registration of the same person got another id")
        for headers, role, staff in (
            (nav, "veileder", stack.veileder),
            (school, "kontaktlaerer", stack.teacher),
        ):
            await expect(
                http.post(
                    f"/api/v1/participants/{participant_id}/assignments",
                    json={"role": role, "staff_id": str(staff.id)},
                    headers=headers,
                ),
                201,
                f"POST .../assignments ({role})",
            )
        await expect(
            http.post(
                "/api/v1/consents",
                json={
                    "participant_id": participant_id,
                    "disclosers": ["skole"],
                    "recipients": ["nav"],
                    "purposes": [PURPOSE],
                    "categories": ["messages"],
                    "grantor": "participant",
                    "collection_method": "paper",
                    "evidence": f"Signert skjema, arkivsak 2026/{number}",
                    "notice": {
                        "version": "vgs-samtykke-1",
                        "hash": "sha256:" + "ab" * 32,
                        "language": "nb",
                    },
                },
                headers=school,
            ),
            201,
            "the school's POST /api/v1/consents",
        )
        return participant_id

    ids = national_ids(config.participants)
    jobs: list[Callable[[], Awaitable[str]]] = [partial(one, n, i) for i, n in enumerate(ids, 1)]
    before = snapshot(stack.pids, with_pg)
    started = time.perf_counter()
    participants = await bounded(config.setup_concurrency, jobs)
    elapsed = time.perf_counter() - started
    after = snapshot(stack.pids, with_pg)
    calls = 5 * len(participants)
    return participants, Phase(
        "enrol (register x2, assign x2, record consent)",
        calls,
        elapsed,
        [],
        cpu_per(before, after, stack.pids, with_pg, calls),
    )


async def open_threads(
    config: Config,
    stack: Stack,
    http: httpx.AsyncClient,
    tokens: Tokens,
    participants: list[str],
    with_pg: bool,
) -> tuple[list[list[str]], Phase]:
    """BENCH_THREADS_PER_PARTICIPANT threads per participant, kontaktlærer to "the veileder"."""
    latencies: list[float] = []
    done = [0]
    total = len(participants) * config.threads_each

    async def one(participant_id: str, number: int) -> str:
        headers = await tokens.headers(stack.skole, stack.teacher)
        began = time.perf_counter()
        opened = await expect(
            http.post(
                "/api/v1/threads",
                json={
                    "participant_id": participant_id,
                    "purpose": PURPOSE,
                    "to": {"role": "veileder"},
                    "subject": f"Fravær, uke {number}",
                    "body": BODY,
                },
                headers=headers,
            ),
            201,
            "POST /api/v1/threads",
        )
        latencies.append(time.perf_counter() - began)
        done[0] += 1
        if done[0] % 400 == 0:
            log(f"  opened {done[0]}/{total} threads")
        return str(opened.json()["id"])

    jobs: list[Callable[[], Awaitable[str]]] = [
        partial(one, p, j) for j in range(config.threads_each) for p in participants
    ]
    before = snapshot(stack.pids, with_pg)
    started = time.perf_counter()
    opened = await bounded(config.setup_concurrency, jobs)
    elapsed = time.perf_counter() - started
    after = snapshot(stack.pids, with_pg)
    threads: list[list[str]] = [[] for _ in participants]
    for index, thread_id in enumerate(opened):
        threads[index % len(participants)].append(thread_id)
    phase = Phase(
        f"POST /api/v1/threads (c={config.setup_concurrency})",
        len(opened),
        elapsed,
        latencies,
        cpu_per(before, after, stack.pids, with_pg, len(opened)),
    )
    return threads, phase


# --- the inbox --------------------------------------------------------------------------------


@dataclass
class InboxRow:
    target: str
    round: int
    requests: int
    items: int
    latencies: list[float]
    errors: int
    cpu_ms: dict[str, float]


async def inbox_run(
    config: Config,
    stack: Stack,
    http: httpx.AsyncClient,
    target: str,
    url: str,
    headers: dict[str, str],
    with_pg: bool,
    round_no: int,
) -> InboxRow:
    """Sequential first-page reads at concurrency 1 (10 discarded first)."""
    latencies: list[float] = []
    errors = 0
    items = 0
    samples: list[str] = []
    for _ in range(10):
        await http.get(url, headers=headers)
    before = snapshot(stack.pids, with_pg)
    for _ in range(config.inbox_requests):
        began = time.perf_counter()
        try:
            response = await http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            errors += 1
            samples.append(f"{type(exc).__name__}: {exc}")
            continue
        latencies.append(time.perf_counter() - began)
        if response.status_code != 200:
            errors += 1
            samples.append(f"{response.status_code}: {response.text[:300]}")
        else:
            items = len(response.json()["items"])
    after = snapshot(stack.pids, with_pg)
    if samples:
        log(f"  inbox {target}: {errors} errors, first: {samples[0]}")
    return InboxRow(
        target,
        round_no,
        config.inbox_requests,
        items,
        latencies,
        errors,
        cpu_per(before, after, stack.pids, with_pg, config.inbox_requests),
    )


# --- message throughput -----------------------------------------------------------------------


@dataclass
class Step:
    offered: float
    sent: int = 0  # POSTs started
    ok: int = 0  # 201s
    seconds: float = 0.0  # first scheduled send to the last 201
    send: list[float] = field(default_factory=list)
    visible: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)  # start of a POST after its scheduled time
    # The first inbox read after the 201 did not show the message: `buried`, another of the
    # participant's threads was on top with a later message; `stale`, it was not (the inbox
    # did not hold the committed message yet).
    buried: int = 0
    stale: int = 0
    errors: int = 0
    unfinished: int = 0  # still running DRAIN_S after the last offered send (errors too)
    samples: list[str] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    busy: float = 0.0
    other: float = 0.0  # % of the machine's CPU spent by processes outside the bench

    @property
    def achieved(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def meets_goal(self) -> bool:
        return (
            self.errors == 0
            and self.achieved >= SUSTAINED * self.offered
            and pct(self.visible, 0.99) <= GOAL_P99_MS
            and bool(self.visible)
        )

    @property
    def overloaded(self) -> bool:
        return self.achieved < OVERLOADED * self.offered or pct(self.visible, 0.99) > 1000

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(text)


def _shows(items: list[Any], thread_id: str, sent_at: datetime) -> bool:
    return any(
        item["id"] == thread_id and _aware(item["last_message_at"]) >= sent_at for item in items
    )


class Offer:
    """Replies offered open-loop at a fixed rate, each followed by the recipient's inbox
    read until it shows the message."""

    def __init__(
        self,
        config: Config,
        http: httpx.AsyncClient,
        participants: list[str],
        threads: list[list[str]],
    ) -> None:
        self.config = config
        self.http = http
        self.participants = participants
        self.threads = threads
        self.counter = 0  # advances over every run, so each thread's turns are spread out
        self.last_ok = 0.0  # time.monotonic() of the latest 201

    def target(self) -> tuple[str, str]:
        index = self.counter
        self.counter += 1
        p = index % len(self.participants)
        own = self.threads[p]
        return self.participants[p], own[(index // len(self.participants)) % len(own)]

    async def one(
        self,
        step: Step,
        participant_id: str,
        thread_id: str,
        sender: dict[str, str],
        reader: dict[str, str],
        check: bool,
    ) -> None:
        began = time.perf_counter()
        try:
            sent = await self.http.post(
                f"/api/v1/threads/{thread_id}/messages", json={"body": BODY}, headers=sender
            )
        except httpx.HTTPError as exc:
            step.error(f"POST .../messages: {type(exc).__name__} {exc}")
            return
        answered = time.perf_counter()
        if sent.status_code != 201:
            step.error(f"POST .../messages {sent.status_code}: {sent.text[:300]}")
            return
        step.ok += 1
        step.send.append(answered - began)
        self.last_ok = time.monotonic()
        if not check:
            return
        sent_at = _aware(sent.json()["sent_at"])
        params = {"participant_id": participant_id, "limit": "1"}
        reads, pause, read_s = 0, 0.01, 0.0
        while True:
            asked = time.perf_counter()
            try:
                found = await self.http.get("/api/v1/threads", params=params, headers=reader)
            except httpx.HTTPError as exc:
                step.error(f"GET /api/v1/threads: {type(exc).__name__} {exc}")
                return
            reads, read_s = reads + 1, time.perf_counter() - asked
            if found.status_code != 200:
                step.error(f"GET /api/v1/threads {found.status_code}: {found.text[:300]}")
                return
            items = found.json()["items"]
            if _shows(items, thread_id, sent_at):
                step.visible.append(time.perf_counter() - began)
                return
            if reads == 1:
                top = items[0] if items else None
                if top and top["id"] != thread_id and _aware(top["last_message_at"]) >= sent_at:
                    # A later message in another of the participant's threads is on top (a
                    # backlog): read the participant's whole inbox at once.
                    step.buried += 1
                    params["limit"] = "50"
                    continue
                step.stale += 1
                params["limit"] = "50"
            if time.perf_counter() - answered > VISIBLE_TIMEOUT_S:
                step.error(
                    f"message in thread {thread_id} not in the inbox {VISIBLE_TIMEOUT_S:g} s "
                    f"after its 201 ({reads} reads, the last took {read_s * 1000:.0f} ms)"
                )
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.2)

    async def run(
        self, rate: float, seconds: float, sender: dict[str, str], reader: dict[str, str]
    ) -> Step:
        step = Step(rate)
        count = max(int(rate * seconds), 1)
        tasks: set[asyncio.Task[None]] = set()
        start = self.last_ok = time.monotonic() + 0.01
        for i in range(count):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            step.lag.append(max(time.monotonic() - due, 0.0))
            participant_id, thread_id = self.target()
            check = i % self.config.visible_every == 0
            task = asyncio.create_task(
                self.one(step, participant_id, thread_id, sender, reader, check)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            step.sent += 1
        if tasks:
            _, still = await asyncio.wait(set(tasks), timeout=DRAIN_S)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still)
                step.unfinished = len(still)
                step.error(f"{len(still)} sends still unanswered {DRAIN_S:.0f} s after the last")
                step.errors += len(still) - 1  # one error each, counted once above
        step.seconds = max(self.last_ok - start, 1e-9)
        return step


async def offered_step(
    config: Config, stack: Stack, tokens: Tokens, offer: Offer, rate: float, with_pg: bool
) -> Step:
    """One rate: a discarded warm-up, then BENCH_DURATION s measured."""
    tokens.forget()  # fresh tokens: a step (with its drain) stays well within 300 s
    sender = await tokens.headers(stack.skole, stack.teacher)
    reader = await tokens.headers(stack.nav, stack.veileder)
    if config.warmup > 0:
        await offer.run(rate, config.warmup, sender, reader)
        await asyncio.sleep(0.5)
    before = snapshot(stack.pids, with_pg)
    step = await offer.run(rate, config.duration, sender, reader)
    after = snapshot(stack.pids, with_pg)
    step.cpu_ms = cpu_per(before, after, stack.pids, with_pg, step.ok)
    step.busy = busy_pct(before, after)
    step.other = other_pct(before, after, with_pg)
    await asyncio.sleep(0.5)  # let in-flight work drain
    return step


def _step_line(backend: str, step: Step) -> str:
    return (
        f"  {backend:<10} {step.offered:5.0f} msg/s offered: {step.achieved:6.1f} achieved, send "
        f"p50/p99 {pct(step.send, 0.5):.1f}/{pct(step.send, 0.99):.1f} ms, visible "
        f"p50/p99 {pct(step.visible, 0.5):.1f}/{pct(step.visible, 0.99):.1f} ms, "
        f"{step.errors} errors; cpu ms/msg: {cpu_text(step.cpu_ms)}"
        + (f"  !! {step.samples[0]}" if step.samples else "")
    )


async def ladder(
    config: Config, stack: Stack, tokens: Tokens, offer: Offer, backend: str, with_pg: bool
) -> tuple[list[Step], list[Step]]:
    """Each rate of BENCH_RATES once, up to the first that is overloaded: the steps, and
    the goal's rate in each round. That rate, unless overloaded, is run again at once
    (before any higher rate can leave a backlog) for BENCH_ROUNDS rounds in all; an
    overloaded one misses the goal whatever the spread, and its backlog takes long to
    drain."""
    steps: list[Step] = []
    at_goal: list[Step] = []
    for rate in config.rates:
        step = await offered_step(config, stack, tokens, offer, rate, with_pg)
        steps.append(step)
        log(_step_line(backend, step))
        if rate == GOAL_RATE:
            at_goal.append(step)
            for round_no in range(2, config.rounds + 1 if not step.overloaded else 0):
                again = await offered_step(config, stack, tokens, offer, rate, with_pg)
                at_goal.append(again)
                log(_step_line(backend, again) + f"  (round {round_no})")
        if step.overloaded:
            skipped = [r for r in config.rates if r > rate]
            if skipped:
                higher = ", ".join(f"{r:g}" for r in skipped)
                log(f"  overloaded at {rate:g} msg/s: skipping {higher}")
            break
    return steps, at_goal


# --- one backend ------------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    phases: list[Phase] = field(default_factory=list)
    inbox: list[InboxRow] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    skipped_rates: list[float] = field(default_factory=list)
    goal_rounds: list[Step] = field(default_factory=list)  # GOAL_RATE, once per round
    notes: list[str] = field(default_factory=list)


async def measure(config: Config, stack: Stack, backend: str, result: Result) -> None:
    with_pg = backend == "postgresql"
    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
    )
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, limits=limits, timeout=REQUEST_TIMEOUT_S
    ) as http:
        tokens = Tokens(http, stack.issuer)
        log(f"[{backend}] enrolling {config.participants} participants")
        participants, phase = await enrol(config, stack, http, tokens, with_pg)
        result.phases.append(phase)
        log(f"  {phase.count} calls in {phase.seconds:.1f} s")
        log(f"[{backend}] opening {config.participants * config.threads_each} threads")
        threads, phase = await open_threads(config, stack, http, tokens, participants, with_pg)
        result.phases.append(phase)
        log(
            f"  {phase.count} threads in {phase.seconds:.1f} s ({phase.rate:.1f}/s), p50/p99 "
            f"{pct(phase.latencies, 0.5):.0f}/{pct(phase.latencies, 0.99):.0f} ms; cpu ms/thread: "
            f"{cpu_text(phase.cpu_ms)}"
        )

        log(
            f"[{backend}] inbox: {config.inbox_requests} first pages each way, "
            f"{config.rounds} round(s)"
        )
        for round_no in range(1, config.rounds + 1):
            veileder = await tokens.headers(stack.nav, stack.veileder)
            for target, url, headers in (
                ("gateway", "/api/v1/threads", veileder),
                ("direct", f"{stack.messaging_url}/api/v1/threads", stack.internal_headers()),
            ):
                row = await inbox_run(config, stack, http, target, url, headers, with_pg, round_no)
                result.inbox.append(row)
                log(
                    f"  {row.target:<8} r{round_no} median {pct(row.latencies, 0.5):.1f} ms, "
                    f"p90 {pct(row.latencies, 0.9):.1f} ms, {row.items} items; cpu ms/req: "
                    f"{cpu_text(row.cpu_ms)}"
                )

        log(f"[{backend}] messages: open-loop at {', '.join(f'{r:g}' for r in config.rates)}/s")
        offer = Offer(config, http, participants, threads)
        result.steps, result.goal_rounds = await ladder(
            config, stack, tokens, offer, backend, with_pg
        )
        result.skipped_rates = [r for r in config.rates if r > result.steps[-1].offered]


def bench_backend(
    config: Config, backend: str, procs: Processes, workdir: Path, result: Result
) -> None:
    log(f"\n[{backend}] setting up (migrations, 4 processes, organisations, clients, staff)")
    with messaging_stack(backend, procs, workdir) as stack:
        troubled = True  # set-up failed (BenchError) or was interrupted
        try:
            asyncio.run(measure(config, stack, backend, result))
            troubled = any(s.errors for s in result.steps) or any(r.errors for r in result.inbox)
        finally:
            if troubled:
                for server in procs.servers:
                    tail = server.log_tail(30).strip()
                    if tail and tail != "(no log)":
                        log(f"--- {backend} {server.name} log, last lines ---\n{tail}")


# --- report -----------------------------------------------------------------------------------


def _cpu_cells(cpu: dict[str, float]) -> str:
    pg = f"{cpu['postgres']:6.2f}" if "postgres" in cpu else f"{'-':>6}"
    return (
        f"{cpu.get('gateway', 0.0):>6.2f} {cpu.get('participant', 0.0):>6.2f} "
        f"{cpu.get('consent', 0.0):>6.2f} {cpu.get('messaging', 0.0):>6.2f} {pg} "
        f"{cpu.get('loadgen', 0.0):>6.2f}"
    )


CPU_HEADER = f"{'gw':>6} {'part':>6} {'cons':>6} {'msg':>6} {'pg':>6} {'lg':>6}"


def print_report(config: Config, results: list[Result], notes: list[str]) -> None:
    print()
    print(
        f"messaging bench: {config.participants} participants x {config.threads_each} threads; "
        f"{NCPU} CPU(s), the asyncio+httpx load generator on the same cores (lg)."
    )
    print(
        "CPU columns: ms of CPU per call (per message in the rate table) from /proc/<pid>/stat "
        "(utime+stime): gw = gateway, part = participant, cons = consent, msg = messaging, "
        "pg = every postgres process on the machine (shared: others' work counts too; '-' on "
        "SQLite, where the database runs inside the service processes), lg = this script."
    )
    for result in results:
        print()
        print(f"== {result.backend}")
        for phase in result.phases:
            line = (
                f"set-up {phase.what}: {phase.count} calls in {phase.seconds:.1f} s "
                f"= {phase.rate:.1f}/s"
            )
            if phase.latencies:
                line += (
                    f", p50 {pct(phase.latencies, 0.5):.0f} ms, p99 "
                    f"{pct(phase.latencies, 0.99):.0f} ms"
                )
            print(line + f"; cpu ms/call: {cpu_text(phase.cpu_ms)}")
        if result.inbox:
            print()
            print(
                f"inbox, first page (limit 50) of the veileder's "
                f"{config.participants * config.threads_each} threads, "
                f"{config.inbox_requests} sequential requests a round "
                f"(goal: <= {GOAL_INBOX_MS:g} ms median):"
            )
            header = (
                f"{'target':<8} {'rnd':>3} {'items':>5} {'median':>7} {'p90':>7} {'p99':>7} "
                f"{'errors':>6} " + CPU_HEADER
            )
            print(header)
            print("-" * len(header))
            for row in result.inbox:
                print(
                    f"{row.target:<8} {row.round:>3} {row.items:>5} "
                    f"{pct(row.latencies, 0.5):>7.2f} {pct(row.latencies, 0.9):>7.2f} "
                    f"{pct(row.latencies, 0.99):>7.2f} {row.errors:>6} " + _cpu_cells(row.cpu_ms)
                )
            for target in ("gateway", "direct"):
                medians = [pct(r.latencies, 0.5) for r in result.inbox if r.target == target]
                print(f"  {target} median over the rounds: {spread_text(medians)} ms")
        if result.steps:
            print()
            print(
                f"replies, open-loop, {config.duration:g} s per rate after {config.warmup:g} s "
                "warm-up (ms; vis = send→visible in the recipient's inbox):"
            )
            header = (
                f"{'offered':>7} {'achieved':>8} {'ok':>5} {'send50':>7} {'send99':>7} "
                f"{'vis50':>7} {'vis99':>7} {'bur':>4} {'stale':>5} {'lag99':>6} {'errors':>6} "
                f"{'busy%':>5} " + CPU_HEADER
            )
            print(header)
            print("-" * len(header))
            for step in result.steps:
                print(
                    f"{step.offered:>7.0f} {step.achieved:>8.1f} {step.ok:>5} "
                    f"{pct(step.send, 0.5):>7.1f} {pct(step.send, 0.99):>7.1f} "
                    f"{pct(step.visible, 0.5):>7.1f} {pct(step.visible, 0.99):>7.1f} "
                    f"{step.buried:>4} {step.stale:>5} {pct(step.lag, 0.99):>6.1f} "
                    f"{step.errors:>6} {step.busy:>5.0f} " + _cpu_cells(step.cpu_ms)
                )
            if result.skipped_rates:
                print(
                    f"not run: {', '.join(f'{r:g}' for r in result.skipped_rates)} msg/s (the "
                    f"last rate was overloaded: achieved < {OVERLOADED:.0%} of offered or "
                    "send→visible p99 > 1 s)"
                )
            best = [s.offered for s in result.steps if s.meets_goal]
            verdict = f"{max(best):g} msg/s" if best else "none of the rates run"
            print(
                f"highest rate with send→visible p99 <= {GOAL_P99_MS:g} ms, no errors and "
                f"achieved >= {SUSTAINED:.0%} of offered: {verdict} (goal: >= {GOAL_RATE:g} msg/s)"
            )
        if result.goal_rounds:
            rounds = result.goal_rounds
            print(
                f"at {GOAL_RATE:g} msg/s, {len(rounds)} round(s), median (min–max): achieved "
                f"{spread_text([s.achieved for s in rounds], 1)} msg/s, send p99 "
                f"{spread_text([pct(s.send, 0.99) for s in rounds], 1)} ms, send→visible p99 "
                f"{spread_text([pct(s.visible, 0.99) for s in rounds], 1)} ms; "
                f"{sum(s.meets_goal for s in rounds)} of {len(rounds)} meet the goal"
            )
            for step in rounds[1:]:
                for sample in step.samples:
                    print(f"  at {step.offered:g} msg/s (again): {sample}")
            for step in result.steps:
                for sample in step.samples:
                    print(f"  at {step.offered:g} msg/s: {sample}")
        for note in result.notes:
            print(note)
    print()
    print(
        "Notes: send = POST /api/v1/threads/{id}/messages by the kontaktlærer, from starting "
        "the request to its 201 (answered after the commit). vis = from starting that POST "
        "until a GET /api/v1/threads?participant_id=...&limit=1 by the veileder, issued right "
        "after the 201, shows the thread with the new last_message_at: the send latency plus "
        "one inbox read. When that read does not show it, the inbox is read again until it does "
        "(at most 5 s): bur = another of the participant's threads was on top with a later "
        "message (a backlog; read again at once, limit 50), stale = the inbox did not yet "
        "show a message whose POST had answered 201 (never expected). A p99 over n samples "
        "is close to their maximum when n is small (n: the ok column)."
        + (
            ""
            if config.visible_every == 1
            else f" Only every {config.visible_every}th message is followed by the read."
        )
    )
    print(
        "The CPU per message includes those inbox reads. Sends are scheduled open-loop "
        "(latency counts from the POST's actual "
        f"start; lag99 = how late the load generator started them); at most {MAX_CONNECTIONS} "
        "connections, so waiting for one counts as latency. achieved = 201s / (first "
        "scheduled send .. last 201)."
    )
    for note in notes:
        print(note)


def _step_data(step: Step) -> dict[str, Any]:
    return {
        "offered": step.offered,
        "achieved": step.achieved,
        "ok": step.ok,
        "send_p50_ms": pct(step.send, 0.5),
        "send_p99_ms": pct(step.send, 0.99),
        "visible_p50_ms": pct(step.visible, 0.5),
        "visible_p99_ms": pct(step.visible, 0.99),
        "visible_samples": len(step.visible),
        "errors": step.errors,
        "busy_pct": step.busy,
        "other_pct": step.other,
        "cpu_ms": step.cpu_ms,
        "meets_goal": step.meets_goal,
        "samples": step.samples,
    }


def record(results: Results, found: list[Result], notes: list[str]) -> None:
    backends = []
    for result in found:
        inbox = {}
        for target in ("gateway", "direct"):
            rows = [r for r in result.inbox if r.target == target]
            if rows:
                inbox[target] = {
                    "median_ms": spread([pct(r.latencies, 0.5) for r in rows]),
                    "p90_ms": spread([pct(r.latencies, 0.9) for r in rows]),
                    "p99_ms": spread([pct(r.latencies, 0.99) for r in rows]),
                    "items": rows[-1].items,
                    "errors": sum(r.errors for r in rows),
                    "cpu_ms": {
                        k: spread([r.cpu_ms.get(k, 0.0) for r in rows]) for k in rows[0].cpu_ms
                    },
                }
        goal = result.goal_rounds
        best = [s.offered for s in result.steps if s.meets_goal]
        backends.append(
            {
                "backend": result.backend,
                "phases": [
                    {
                        "what": p.what,
                        "count": p.count,
                        "seconds": p.seconds,
                        "rate": p.rate,
                        "p50_ms": pct(p.latencies, 0.5) if p.latencies else None,
                        "p99_ms": pct(p.latencies, 0.99) if p.latencies else None,
                        "cpu_ms": p.cpu_ms,
                    }
                    for p in result.phases
                ],
                "inbox": inbox,
                "steps": [_step_data(s) for s in result.steps],
                "skipped_rates": result.skipped_rates,
                "best_rate_meeting_goal": max(best) if best else None,
                "goal_rate": {
                    "rate": GOAL_RATE,
                    "rounds": [_step_data(s) for s in goal],
                    "achieved": spread([s.achieved for s in goal]),
                    "send_p99_ms": spread([pct(s.send, 0.99) for s in goal]),
                    "visible_p99_ms": spread([pct(s.visible, 0.99) for s in goal]),
                    "met": sum(s.meets_goal for s in goal),
                }
                if goal
                else None,
                "notes": result.notes,
            }
        )
    results.data["backends"] = backends
    results.data["goals"] = {
        "rate": GOAL_RATE,
        "visible_p99_ms": GOAL_P99_MS,
        "inbox_median_ms": GOAL_INBOX_MS,
    }
    results.data["notes"] = notes
    results.write()


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    catch_signals()
    try:
        config = Config.from_env()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    results_file = Results("messaging", config.settings())
    notes: list[str] = []
    log(
        f"bench messaging: backends {', '.join(config.backends)}; rates "
        f"{', '.join(f'{r:g}' for r in config.rates)} msg/s"
    )
    if "postgresql" not in config.backends and "BENCH_BACKENDS" not in os.environ:
        notes.append("PostgreSQL: skipped, nothing answers on 127.0.0.1:5432.")

    def finish(results: list[Result]) -> None:
        print_report(config, results, notes)
        record(results_file, results, notes)

    cases = [(backend, partial(Result, backend)) for backend in config.backends]

    def run(result: Result, procs: Processes, workdir: Path) -> None:
        bench_backend(config, result.backend, procs, workdir, result)

    return run_cases("broen-bench-msg-", cases, run, finish, results_file, notes)


if __name__ == "__main__":
    sys.exit(main())
