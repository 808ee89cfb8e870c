"""`make bench` (events): NAV's batch push through the gateway, and how soon others have it.

Starts the participant, consent and messaging services and the gateway as real processes
on loopback (`broen serve ...`, production mode) and builds a world through the API: NAV
with an API client (private_key_jwt; scopes participants:read participants:write
events:write subscriptions) and a veileder, and BENCH_PARTICIPANTS participants (200)
registered by NAV with the veileder assigned (a system token's relationship: NAV's own
system then sees the events about them). Each run is one backend (SQLite; PostgreSQL when
one answers on 127.0.0.1:5432, its databases created here and dropped at the end) and one
transport of the domain events: the database pull (the gateway takes the services' outboxes,
the embedded default) and NATS JetStream when 127.0.0.1:4222 answers (BROEN_NATS_URL, a
stream of its own per run, BENCH_<random>, deleted at the end). Then it measures:

  * ingest: NAV pushes `POST /api/v1/events:batch` open-loop at each rate of
    BENCH_EVENT_RATES events/s in batches of BENCH_BATCH_SIZE items (`tiltak.startet`,
    round-robin over the participants, a fresh idempotency key each) for BENCH_DURATION s
    after a BENCH_WARMUP s warm-up (discarded): achieved events/s (accepted items), the
    batch request's p50/p99, refused items and errors;
  * at each rate, the delivery lag of those events, from the CloudEvents `time` of their
    `no.broen.timeline.event_recorded` (set by the participant service as it records the
    batch, just before its commit) to the moment a consumer has it:
      - a changes-feed poller: NAV's system reading `GET /api/v1/events?limit=500` with
        `Broen-Purpose: oppfolging` from the cursor at the end of the log when the ladder
        starts, the next page at once when a page was full, else after BENCH_POLL_INTERVAL s;
      - a NATS consumer (NATS transport only): an ephemeral ordered JetStream consumer in
        this process on the stream's `<stream>.timeline.event_recorded`, new messages only;
    every event of the step is waited for (at most BENCH_DRAIN s after the last answer;
    what never arrives is counted as missing);
  * the CPU ms per accepted event of every process (gateway, participant, consent,
    messaging; every postgres process on PostgreSQL; nats-server on NATS; this script) from
    /proc/<pid>/stat, from the start of the step until its events were delivered (or the
    drain gave up), so the delivery and the polling count too;
  * webhooks, separately (the poller and the NATS consumer stopped): a receiver in this
    process (aiohttp on 127.0.0.1) verifies each delivery's signature with the
    `standardwebhooks` library and records when it arrived; NAV subscribes it to
    `no.broen.timeline.event_recorded` for oppfolging (the gateway runs with
    BROEN_GATEWAY_WEBHOOK_ALLOWED_NETWORKS=["127.0.0.0/8"] so plain http to loopback is
    allowed); then events are pushed as above at each rate of BENCH_WEBHOOK_RATES: achieved
    deliveries/s, lag p50/p99, missing and duplicate deliveries, bad signatures; and the
    highest rate with lag p99 <= 1 s.

The goal's rate (1,000 events/s), when the ingest ladder reaches it without being
overloaded there, is run again at once so that it is measured BENCH_ROUNDS times in all
(3), for its median and spread (min–max). The
figures also go to BENCH_RESULTS_DIR/events.json (default var/bench/) for bench/report.py.

A ladder stops early at a rate that is overloaded (achieved < 80% of offered, events
still missing after the drain, or a delivery lag p99 over 5 s; for webhooks also
deliveries at < 80% of the offered rate): a backlog would spoil the next rate.

Environment: BENCH_DURATION (s per rate, default 10), BENCH_WARMUP (s, default 2),
BENCH_ROUNDS (3), BENCH_BACKENDS ("sqlite,postgresql"; default: both, PostgreSQL only when
reachable), BENCH_TRANSPORTS ("db,nats"; default: both, NATS only when 127.0.0.1:4222
answers),
BENCH_NATS_URL (nats://127.0.0.1:4222), BENCH_CONSUMERS ("feed,nats": which consumers
follow the ingest; one alone shows its lag without the other's load), BENCH_EVENT_RATES
("500,1000,1500" events/s), BENCH_BATCH_SIZE (100 items a request, at most 1000),
BENCH_WEBHOOK_RATES ("100,250,500,1000" events/s; "0" skips the webhooks),
BENCH_PARTICIPANTS (200), BENCH_SETUP_CONCURRENCY (8), BENCH_POLL_INTERVAL (s, 0.05),
BENCH_DRAIN (s, 20). The services' relay and the gateway's ingest run at their default
intervals (0.1 s).

Figures, not asserts: the goal in docs/PERFORMANCE.md (1,000 events/s ingested in batches,
delivery lag p99 <= 1 s) is to be read off the report.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/events.py` puts bench/ first, not the root
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CLK_TCK,
    LOOPBACK,
    NCPU,
    BenchError,
    Processes,
    Results,
    answers,
    backends_from_env,
    busy_pct,
    catch_signals,
    cpu_per,
    env_choices,
    env_float,
    env_int,
    env_numbers,
    free_port,
    log,
    other_pct,
    pct,
    rounds_from_env,
    run_cases,
    snapshot,
    spread,
    spread_text,
)
from bench.messaging import (  # noqa: E402
    NAV,
    PURPOSE,
    Org,
    Tokens,
    _aware,
    bounded,
    expect,
    four_components,
    national_ids,
    new_org,
)
from services.participant.schemas import StaffRead  # noqa: E402

SCOPES = ("participants:read", "participants:write", "events:write", "subscriptions")
RECORDED = "no.broen.timeline.event_recorded"
EVENT_TYPE = "tiltak.startet"  # owned by NAV, a simple payload
PAYLOAD = {"measure_type": "arbeidstrening", "starts_on": "2026-09-01"}
BATCH_URL = "/api/v1/events:batch"
FEED_URL = "/api/v1/events"
FEED_LIMIT = 500
TRANSPORT_NAMES = {"db": "database pull", "nats": "NATS JetStream"}
NATS_DEFAULT_URL = "nats://127.0.0.1:4222"
REQUEST_TIMEOUT_S = 30.0  # a batch of 1,000 may take a while; slower is an error
DRAIN_REQUESTS_S = 30.0  # after the last offered batch, wait this long for answers
MAX_CONNECTIONS = 64
GOAL_RATE = 1000.0
GOAL_LAG_MS = 1000.0
SUSTAINED = 0.95
OVERLOADED = 0.8
BACKLOG_LAG_MS = 5 * GOAL_LAG_MS  # a lag p99 over this is a backlog: higher rates are not run


# --- configuration ----------------------------------------------------------------------------


def _rates(name: str, default: str) -> tuple[float, ...]:
    return tuple(sorted(r for r in env_numbers(name, default) if r > 0))


def _nats_answers(url: str) -> bool:
    rest = url.split("://", 1)[-1].rsplit("@", 1)[-1]
    host, _, port = rest.partition(":")
    return answers(host or LOOPBACK, int(port or 4222))


@dataclass(frozen=True)
class Config:
    duration: float
    warmup: float
    rounds: int
    rates: tuple[float, ...]
    batch: int
    webhook_rates: tuple[float, ...]
    backends: tuple[str, ...]
    transports: tuple[str, ...]
    nats_url: str
    consumers: tuple[str, ...]
    participants: int
    setup_concurrency: int
    poll_interval: float
    drain: float

    @classmethod
    def from_env(cls) -> Config:
        rates = _rates("BENCH_EVENT_RATES", "500,1000,1500")
        if not rates:
            raise BenchError("BENCH_EVENT_RATES needs at least one positive rate")
        batch = env_int("BENCH_BATCH_SIZE", 100)
        if batch > 1000:
            raise BenchError("BENCH_BATCH_SIZE: a batch holds at most 1,000 items")
        nats_url = os.environ.get("BENCH_NATS_URL", NATS_DEFAULT_URL)
        default_transports = "db,nats" if _nats_answers(nats_url) else "db"
        return cls(
            duration=max(env_float("BENCH_DURATION", 10.0), 1.0),
            warmup=max(env_float("BENCH_WARMUP", 2.0), 0.0),
            rounds=rounds_from_env(3),
            rates=rates,
            batch=batch,
            webhook_rates=_rates("BENCH_WEBHOOK_RATES", "100,250,500,1000"),
            backends=backends_from_env(),
            transports=env_choices("BENCH_TRANSPORTS", default_transports, ("db", "nats")),
            nats_url=nats_url,
            consumers=env_choices("BENCH_CONSUMERS", "feed,nats", ("feed", "nats")),
            participants=env_int("BENCH_PARTICIPANTS", 200),
            setup_concurrency=env_int("BENCH_SETUP_CONCURRENCY", 8),
            poll_interval=max(env_float("BENCH_POLL_INTERVAL", 0.05), 0.0),
            drain=max(env_float("BENCH_DRAIN", 20.0), 1.0),
        )

    def settings(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "rounds": self.rounds,
            "rates": list(self.rates),
            "batch": self.batch,
            "webhook_rates": list(self.webhook_rates),
            "backends": list(self.backends),
            "transports": list(self.transports),
            "consumers": list(self.consumers),
            "participants": self.participants,
            "poll_interval_s": self.poll_interval,
            "drain_s": self.drain,
            "load_generator": "asyncio+httpx in bench/events.py, open-loop, "
            f"at most {MAX_CONNECTIONS} connections",
        }


# --- the stack --------------------------------------------------------------------------------


def nats_server_pid() -> int | None:
    """The nats-server process on this machine, for its CPU time (None if not visible)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if (entry / "comm").read_text().strip() == "nats-server":
                    return int(entry.name)
    return None


@dataclass
class Stack:
    gateway_url: str
    issuer: str
    nav: Org
    veileder: StaffRead
    pids: dict[str, int]  # the four Broen processes
    stream: str | None  # the JetStream stream of this run (NATS transport)
    nats_pid: int | None

    def cpu_pids(self) -> dict[str, int]:
        pids = dict(self.pids)
        if self.nats_pid is not None:
            pids["nats"] = self.nats_pid
        return pids


async def _delete_stream(url: str, stream: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    client = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=1)
    try:
        with suppress(NotFoundError):
            await client.jetstream().delete_stream(stream)
    finally:
        await client.close()


@contextmanager
def events_stack(
    config: Config, backend: str, transport: str, procs: Processes, workdir: Path
) -> Iterator[Stack]:
    """Databases, keys, the four processes, NAV with its client and veileder; on the NATS
    transport a stream of this run's own, deleted afterwards."""
    stream = f"BENCH_{secrets.token_hex(6).upper()}" if transport == "nats" else None
    env = {
        "BROEN_GATEWAY_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "BROEN_GATEWAY_WEBHOOK_RETRY_BASE_SECONDS": "1",
    }
    if stream is not None:
        env |= {"BROEN_NATS_URL": config.nats_url, "BROEN_NATS_STREAM": stream}
    nav = new_org(NAV, "nav", "bench-nav", "nav-1")
    try:
        with four_components(
            backend, procs, workdir, orgs=(nav,), scopes=SCOPES, env=env
        ) as running:
            yield Stack(
                running.base["gateway"],
                running.issuer,
                nav,
                running.veileder,
                running.pids,
                stream,
                nats_server_pid() if stream is not None else None,
            )
    finally:
        if stream is not None:
            try:
                asyncio.run(_delete_stream(config.nats_url, stream))
            except Exception as exc:
                log(f"could not delete the NATS stream {stream}: {type(exc).__name__} {exc}")


# --- NAV's system token -----------------------------------------------------------------------


class SystemToken:
    """NAV's system access token (client_credentials), with the purpose of its reads."""

    def __init__(self, http: httpx.AsyncClient, issuer: str, org: Org) -> None:
        self.tokens = Tokens(http, issuer, SCOPES)
        self.org = org

    async def headers(self) -> dict[str, str]:
        return await self.tokens.headers(self.org, purpose=True)


# --- the world --------------------------------------------------------------------------------


@dataclass
class Phase:
    what: str
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


async def enrol(
    config: Config, stack: Stack, http: httpx.AsyncClient, token: SystemToken
) -> tuple[list[str], Phase]:
    """Each participant registered by NAV, and NAV's veileder assigned."""

    async def one(national_id: str, number: int) -> str:
        headers = await token.headers()
        registered = await expect(
            http.post(
                "/api/v1/participants",
                json={
                    "national_id": national_id,
                    "name": f"Deltaker {number}",
                    "source_system": "Arena",
                },
                headers=headers,
            ),
            201,
            "NAV's POST /api/v1/participants",
        )
        participant_id = str(registered.json()["id"])
        await expect(
            http.post(
                f"/api/v1/participants/{participant_id}/assignments",
                json={"role": "veileder", "staff_id": str(stack.veileder.id)},
                headers=headers,
            ),
            201,
            "POST .../assignments (veileder)",
        )
        return participant_id

    ids = national_ids(config.participants)
    jobs: list[Callable[[], Awaitable[str]]] = [partial(one, n, i) for i, n in enumerate(ids, 1)]
    started = time.perf_counter()
    participants = await bounded(config.setup_concurrency, jobs)
    elapsed = time.perf_counter() - started
    return participants, Phase("register + assign veileder", 2 * len(participants), elapsed)


# --- consumers --------------------------------------------------------------------------------


class Receipts:
    """What one consumer received of the `timeline.event_recorded` events: per timeline
    event id (data.event_id) the lag of its first receipt and when that was."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lags: dict[str, float] = {}
        self.at: dict[str, float] = {}  # time.monotonic() of the first receipt
        self.duplicates = 0
        self.errors = 0
        self.samples: list[str] = []

    def add(self, envelope: Any, received: float, received_mono: float) -> None:
        if not isinstance(envelope, dict) or envelope.get("type") != RECORDED:
            return
        data = envelope.get("data")
        event_id = data.get("event_id") if isinstance(data, dict) else None
        if not isinstance(event_id, str):
            self.error(f"an event_recorded without data.event_id: {str(envelope)[:200]}")
            return
        if event_id in self.lags:
            self.duplicates += 1
            return
        try:
            sent = _aware(str(envelope["time"])).timestamp()
        except (KeyError, ValueError):
            self.error(f"an event without a readable time: {str(envelope)[:200]}")
            return
        self.lags[event_id] = received - sent
        self.at[event_id] = received_mono

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(text)


class FeedPoller:
    """NAV's system reading the changes feed continuously: the next page at once when a
    page was full, else after the poll interval."""

    def __init__(
        self, http: httpx.AsyncClient, token: SystemToken, receipts: Receipts, interval: float
    ) -> None:
        self.http = http
        self.token = token
        self.receipts = receipts
        self.interval = interval
        self.cursor: str | None = None
        self.polls: list[float] = []  # request latencies
        self.items = 0
        self._stop = asyncio.Event()

    async def _page(self) -> list[Any] | None:
        params = {"limit": str(FEED_LIMIT)}
        if self.cursor is not None:
            params["cursor"] = self.cursor
        began = time.perf_counter()
        try:
            response = await self.http.get(
                FEED_URL, params=params, headers=await self.token.headers()
            )
        except httpx.HTTPError as exc:
            self.receipts.error(f"GET {FEED_URL}: {type(exc).__name__} {exc}")
            return None
        received, received_mono = time.time(), time.monotonic()
        self.polls.append(time.perf_counter() - began)
        if response.status_code != 200:
            self.receipts.error(f"GET {FEED_URL} {response.status_code}: {response.text[:300]}")
            return None
        body = response.json()
        self.cursor = str(body["next_cursor"])
        items: list[Any] = body["items"]
        self.items += len(items)
        for item in items:
            self.receipts.add(item, received, received_mono)
        return items

    async def catch_up(self) -> None:
        """Read from the start of the log to its end: the cursor the ladder starts from."""
        while True:
            items = await self._page()
            if items is None:
                raise BenchError(f"the changes feed failed: {self.receipts.samples[-1]}")
            if len(items) < FEED_LIMIT:
                break
        self.polls.clear()

    async def run(self) -> None:
        while not self._stop.is_set():
            items = await self._page()
            if items is None or len(items) < FEED_LIMIT:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=max(self.interval, 0.001))

    def stop(self) -> None:
        self._stop.set()


class NatsWatcher:
    """An ephemeral ordered JetStream consumer of the stream's event_recorded subject."""

    def __init__(self, url: str, stream: str, receipts: Receipts) -> None:
        self.url = url
        self.stream = stream
        self.receipts = receipts
        self._client: Any = None
        self._subscription: Any = None

    async def start(self) -> None:
        import nats
        from nats.js.api import DeliverPolicy

        from shared.jetstream import subject_of

        self._client = await nats.connect(self.url, name="bench-events", connect_timeout=5)
        self._subscription = await self._client.jetstream().subscribe(
            subject_of(self.stream, RECORDED),
            stream=self.stream,
            cb=self._on_message,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )

    async def _on_message(self, message: Any) -> None:
        received, received_mono = time.time(), time.monotonic()
        try:
            envelope = json.loads(message.data)
        except ValueError:
            self.receipts.error(f"a message that is not JSON on {message.subject}")
            return
        self.receipts.add(envelope, received, received_mono)

    async def close(self) -> None:
        if self._subscription is not None:
            with suppress(Exception):
                await self._subscription.unsubscribe()
        if self._client is not None:
            with suppress(Exception):
                await self._client.close()


class WebhookReceiver:
    """Webhook deliveries, each signature verified (Standard Webhooks), answered 204."""

    PATH = "/hook"

    def __init__(self) -> None:
        self.receipts = Receipts("webhook")
        self.bad_signatures = 0
        self.requests = 0
        self.port = free_port()
        self._verifier: Any = None
        self._runner: Any = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{self.PATH}"

    def use_secret(self, secret: str) -> None:
        from standardwebhooks import Webhook

        self._verifier = Webhook(secret)

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_post(self.PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web
        from standardwebhooks.webhooks import WebhookVerificationError

        received, received_mono = time.time(), time.monotonic()
        self.requests += 1
        body = await request.read()
        if self._verifier is None:
            return web.Response(status=503)
        try:
            envelope = self._verifier.verify(
                body, {k.lower(): v for k, v in request.headers.items()}
            )
        except (WebhookVerificationError, ValueError) as exc:
            self.bad_signatures += 1
            self.receipts.error(f"a delivery whose signature did not verify: {exc}")
            return web.Response(status=401)
        self.receipts.add(envelope, received, received_mono)
        return web.Response(status=204)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --- the push ---------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One consumer's share of a step: its lags, what never came, its sustained rate."""

    consumer: str
    lags: list[float]
    missing: int
    rate: float  # events of the step delivered / (first .. last receipt, >= the duration)


@dataclass
class Step:
    offered: float
    batches: int = 0  # requests started
    ok: int = 0  # 200s
    accepted: int = 0
    refused: int = 0
    seconds: float = 0.0  # the offered duration, or up to the last answer if that was later
    start: float = 0.0  # time.monotonic() of the first scheduled batch
    latencies: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)  # how late a batch was started
    event_ids: list[str] = field(default_factory=list)
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)
    busy: float = 0.0
    other: float = 0.0  # % of the machine's CPU spent by processes outside the bench
    waited: float = 0.0  # from the last answer until every event was delivered (or not)

    @property
    def achieved(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(text)

    def delivered_ok(self, consumer: str) -> bool:
        found = self.deliveries.get(consumer)
        return (
            found is not None
            and bool(found.lags)
            and found.missing == 0
            and pct(found.lags, 0.99) <= GOAL_LAG_MS
        )

    def overloaded(self, delivery: bool) -> bool:
        """Achieved < 80% of offered, events still missing, or a delivery lag p99 over
        BACKLOG_LAG_MS (a backlog, which would spoil the next rate); with `delivery`, also
        a consumer that took them at < 80% of the offered rate."""
        slow = any(d.rate < OVERLOADED * self.offered for d in self.deliveries.values())
        return (
            self.achieved < OVERLOADED * self.offered
            or any(d.missing for d in self.deliveries.values())
            or any(pct(d.lags, 0.99) > BACKLOG_LAG_MS for d in self.deliveries.values())
            or (delivery and slow)
        )


class Pusher:
    """NAV's batches offered open-loop at a fixed rate of events."""

    def __init__(
        self, config: Config, http: httpx.AsyncClient, token: SystemToken, participants: list[str]
    ) -> None:
        self.config = config
        self.http = http
        self.token = token
        self.participants = participants
        self.run_id = secrets.token_hex(4)
        self.counter = 0
        self.last_answer = 0.0

    def items(self) -> list[dict[str, Any]]:
        occurred = datetime.now(UTC).isoformat()
        items = []
        for _ in range(self.config.batch):
            n = self.counter
            self.counter += 1
            items.append(
                {
                    "idempotency_key": f"bench-{self.run_id}-{n}",
                    "participant_id": self.participants[n % len(self.participants)],
                    "type": EVENT_TYPE,
                    "occurred_at": occurred,
                    "payload": PAYLOAD,
                    "source_system": "Arena",
                }
            )
        return items

    async def one(self, step: Step, headers: dict[str, str]) -> None:
        body = {"items": self.items()}
        began = time.perf_counter()
        try:
            response = await self.http.post(BATCH_URL, json=body, headers=headers)
        except httpx.HTTPError as exc:
            step.error(f"POST {BATCH_URL}: {type(exc).__name__} {exc}")
            return
        elapsed = time.perf_counter() - began
        self.last_answer = time.monotonic()
        if response.status_code != 200:
            step.error(f"POST {BATCH_URL} {response.status_code}: {response.text[:300]}")
            return
        step.ok += 1
        step.latencies.append(elapsed)
        answer = response.json()
        for result in answer["items"]:
            if result.get("status") == 201 and result.get("event_id"):
                step.accepted += 1
                step.event_ids.append(str(result["event_id"]))
            else:
                step.refused += 1
                if len(step.samples) < 5:
                    step.samples.append(f"item refused: {json.dumps(result)[:300]}")

    async def run(self, step: Step, seconds: float) -> None:
        rate = step.offered
        interval = self.config.batch / rate
        count = max(round(rate * seconds / self.config.batch), 1)
        headers = await self.token.headers()
        tasks: set[asyncio.Task[None]] = set()
        step.start = self.last_answer = time.monotonic() + 0.01
        for i in range(count):
            due = step.start + i * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            step.late.append(max(time.monotonic() - due, 0.0))
            task = asyncio.create_task(self.one(step, headers))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            step.batches += 1
        if tasks:
            _, still = await asyncio.wait(set(tasks), timeout=DRAIN_REQUESTS_S)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still)
                step.error(
                    f"{len(still)} batches still unanswered {DRAIN_REQUESTS_S:.0f} s after the last"
                )
                step.errors += len(still) - 1
        step.seconds = max(count * interval, self.last_answer - step.start)


async def settle(step: Step, consumers: list[Receipts], drain: float) -> None:
    """Wait until every consumer has every event of the step (at most `drain` s), then
    take their lags."""
    began = time.monotonic()
    deadline = began + drain
    wanted = step.event_ids
    while time.monotonic() < deadline:
        if all(all(e in c.lags for e in wanted) for c in consumers):
            break
        await asyncio.sleep(0.05)
    step.waited = time.monotonic() - began
    for consumer in consumers:
        lags = [consumer.lags[e] for e in wanted if e in consumer.lags]
        moments = [consumer.at[e] for e in wanted if e in consumer.at]
        span = max(step.seconds, (max(moments) - min(moments)) if moments else 0.0, 1e-9)
        step.deliveries[consumer.name] = Delivery(
            consumer.name, lags, len(wanted) - len(lags), len(lags) / span
        )


async def measured_step(
    config: Config,
    stack: Stack,
    pusher: Pusher,
    rate: float,
    consumers: list[Receipts],
    with_pg: bool,
) -> Step:
    if config.warmup > 0:
        await pusher.run(Step(rate), config.warmup)
    pids = stack.cpu_pids()
    before = snapshot(pids, with_pg)
    step = Step(rate)
    await pusher.run(step, config.duration)
    await settle(step, consumers, config.drain)
    after = snapshot(pids, with_pg)
    step.cpu_ms = cpu_per(before, after, pids, with_pg, step.accepted)
    step.busy = busy_pct(before, after)
    step.other = other_pct(before, after, with_pg)
    return step


# --- one backend and transport ----------------------------------------------------------------


@dataclass
class Result:
    backend: str
    transport: str
    phases: list[Phase] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    skipped: list[float] = field(default_factory=list)
    webhook_steps: list[Step] = field(default_factory=list)
    webhook_skipped: list[float] = field(default_factory=list)
    goal_rounds: list[Step] = field(default_factory=list)  # GOAL_RATE, once per round
    feed_polls: list[float] = field(default_factory=list)
    consumer_notes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.backend} / {TRANSPORT_NAMES[self.transport]}"


def _step_line(step: Step) -> str:
    parts = [
        f"{step.offered:5.0f}/s offered: {step.achieved:6.1f} achieved, batch p50/p99 "
        f"{pct(step.latencies, 0.5):.0f}/{pct(step.latencies, 0.99):.0f} ms"
    ]
    for d in step.deliveries.values():
        parts.append(
            f"{d.consumer} lag p50/p99 {pct(d.lags, 0.5):.0f}/{pct(d.lags, 0.99):.0f} ms"
            + (f" ({d.missing} missing)" if d.missing else "")
        )
    line = (
        ", ".join(parts)
        + f", {step.errors} errors, busy {step.busy:.0f}% (other {step.other:.0f}%)"
    )
    if step.refused:
        line += f", {step.refused} refused"
    return line + (f"  !! {step.samples[0]}" if step.samples else "")


async def _ladder(
    config: Config,
    stack: Stack,
    pusher: Pusher,
    rates: tuple[float, ...],
    consumers: list[Receipts],
    with_pg: bool,
    steps: list[Step],
    label: str,
    delivery: bool,
    goal_rounds: list[Step] | None = None,
) -> list[float]:
    """Each rate once, up to the first that is overloaded; the rates not run. With
    `goal_rounds`, the goal's rate, unless overloaded, is run again at once (before any
    higher rate can leave a backlog) for BENCH_ROUNDS rounds in all, each round kept
    there; an overloaded one misses the goal whatever the spread."""
    for rate in rates:
        step = await measured_step(config, stack, pusher, rate, consumers, with_pg)
        steps.append(step)
        log(f"  {label} {_step_line(step)}")
        if goal_rounds is not None and rate == GOAL_RATE:
            goal_rounds.append(step)
            for round_no in range(2, config.rounds + 1 if not step.overloaded(delivery) else 0):
                await asyncio.sleep(0.5)
                again = await measured_step(config, stack, pusher, rate, consumers, with_pg)
                goal_rounds.append(again)
                log(f"  {label} {_step_line(again)}  (round {round_no})")
        if step.overloaded(delivery):
            skipped = [r for r in rates if r > rate]
            if skipped:
                log(f"  overloaded at {rate:g}/s: skipping {', '.join(f'{r:g}' for r in skipped)}")
            return skipped
        await asyncio.sleep(0.5)
    return []


async def measure(config: Config, stack: Stack, result: Result) -> None:
    with_pg = result.backend == "postgresql"
    limits = httpx.Limits(
        max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_CONNECTIONS
    )
    async with (
        httpx.AsyncClient(
            base_url=stack.gateway_url, limits=limits, timeout=REQUEST_TIMEOUT_S
        ) as http,
        httpx.AsyncClient(base_url=stack.gateway_url, timeout=REQUEST_TIMEOUT_S) as feed_http,
    ):
        token = SystemToken(http, stack.issuer, stack.nav)
        label = f"[{result.backend}/{result.transport}]"
        log(f"{label} enrolling {config.participants} participants")
        participants, phase = await enrol(config, stack, http, token)
        result.phases.append(phase)
        log(f"  {phase.count} calls in {phase.seconds:.1f} s ({phase.rate:.1f}/s)")
        pusher = Pusher(config, http, token, participants)

        consumers: list[Receipts] = []
        poller: FeedPoller | None = None
        polling: asyncio.Task[None] | None = None
        if "feed" in config.consumers:
            poller = FeedPoller(feed_http, token, Receipts("feed"), config.poll_interval)
            await poller.catch_up()
            consumers.append(poller.receipts)
        watcher: NatsWatcher | None = None
        if stack.stream is not None and "nats" in config.consumers:
            watcher = NatsWatcher(config.nats_url, stack.stream, Receipts("nats"))
            await watcher.start()
            consumers.append(watcher.receipts)
        if poller is not None:
            polling = asyncio.create_task(poller.run())
        log(
            f"{label} ingest: batches of {config.batch} at "
            f"{', '.join(f'{r:g}' for r in config.rates)} events/s"
        )
        try:
            result.skipped = await _ladder(
                config,
                stack,
                pusher,
                config.rates,
                consumers,
                with_pg,
                result.steps,
                label,
                delivery=False,
                goal_rounds=result.goal_rounds,
            )
        finally:
            if poller is not None and polling is not None:
                poller.stop()
                with suppress(Exception):
                    await polling
                result.feed_polls = poller.polls
            if watcher is not None:
                await watcher.close()
        for consumer in consumers:
            if consumer.errors or consumer.duplicates:
                result.consumer_notes.append(
                    f"{consumer.name}: {consumer.errors} errors, {consumer.duplicates} "
                    "duplicates" + (f"; first: {consumer.samples[0]}" if consumer.samples else "")
                )

        if not config.webhook_rates:
            return
        receiver = WebhookReceiver()
        await receiver.start()
        try:
            created = await expect(
                http.post(
                    "/api/v1/subscriptions",
                    json={"url": receiver.url, "event_types": [RECORDED], "purpose": PURPOSE},
                    headers=await token.headers(),
                ),
                201,
                "POST /api/v1/subscriptions",
            )
            receiver.use_secret(str(created.json()["secret"]))
            log(
                f"{label} webhooks to {receiver.url}: "
                f"{', '.join(f'{r:g}' for r in config.webhook_rates)} events/s"
            )
            result.webhook_skipped = await _ladder(
                config,
                stack,
                pusher,
                config.webhook_rates,
                [receiver.receipts],
                with_pg,
                result.webhook_steps,
                label,
                delivery=True,
            )
        finally:
            await receiver.close()
        got = receiver.receipts
        if got.errors or got.duplicates or receiver.bad_signatures:
            result.consumer_notes.append(
                f"webhook: {receiver.requests} requests, {receiver.bad_signatures} bad "
                f"signatures, {got.duplicates} duplicates, {got.errors} errors"
                + (f"; first: {got.samples[0]}" if got.samples else "")
            )


def bench_one(
    config: Config, backend: str, transport: str, procs: Processes, workdir: Path, result: Result
) -> None:
    log(
        f"\n[{backend}/{transport}] setting up (migrations, 4 processes, NAV, its client "
        "and veileder)"
    )
    with events_stack(config, backend, transport, procs, workdir) as stack:
        troubled = True
        try:
            asyncio.run(measure(config, stack, result))
            troubled = any(
                s.errors or s.refused or any(d.missing for d in s.deliveries.values())
                for s in (*result.steps, *result.webhook_steps)
            ) or bool(result.consumer_notes)
        finally:
            if troubled:
                for server in procs.servers:
                    tail = server.log_tail(30).strip()
                    if tail and tail != "(no log)":
                        log(f"--- {backend}/{transport} {server.name} log, last lines ---\n{tail}")


# --- report -----------------------------------------------------------------------------------

SHORT = {
    "gateway": "gw",
    "participant": "part",
    "consent": "cons",
    "messaging": "msg",
    "postgres": "pg",
    "nats": "nats",
    "loadgen": "bench",
}
CPU_ORDER = ("gateway", "participant", "consent", "messaging", "postgres", "nats", "loadgen")
CPU_HEADER = " ".join(f"{SHORT[k]:>6}" for k in CPU_ORDER)


def _cpu_cells(cpu: dict[str, float]) -> str:
    return " ".join(f"{cpu[k]:>6.2f}" if k in cpu else f"{'-':>6}" for k in CPU_ORDER)


def _lag_cells(step: Step, consumer: str) -> str:
    found = step.deliveries.get(consumer)
    if found is None:
        return f"{'-':>7} {'-':>7} {'-':>5}"
    return f"{pct(found.lags, 0.5):>7.0f} {pct(found.lags, 0.99):>7.0f} {found.missing:>5}"


def _goal_step(steps: list[Step]) -> Step | None:
    """The step run at the goal's rate, or the nearest one to it."""
    if not steps:
        return None
    return min(steps, key=lambda s: (abs(s.offered - GOAL_RATE), -s.offered))


def _ingest_met(step: Step) -> bool:
    return (
        step.achieved >= SUSTAINED * step.offered
        and step.errors == 0
        and step.refused == 0
        and step.offered >= GOAL_RATE
    )


def _webhook_best(result: Result) -> float | None:
    """The highest webhook rate delivered in full at that rate with lag p99 <= 1 s."""
    best = [
        s.offered
        for s in result.webhook_steps
        if s.delivered_ok("webhook")
        and s.deliveries["webhook"].rate >= SUSTAINED * s.offered
        and s.errors == 0
    ]
    return max(best) if best else None


def _goal_rounds_line(result: Result) -> str | None:
    rounds = result.goal_rounds
    if not rounds:
        return None
    parts = [f"achieved {spread_text([s.achieved for s in rounds], 0)}/s"]
    for name in rounds[0].deliveries:
        lags = [pct(s.deliveries[name].lags, 0.99) for s in rounds if name in s.deliveries]
        parts.append(f"{name} lag p99 {spread_text(lags, 0)} ms")
    met = sum(_ingest_met(s) and all(s.delivered_ok(n) for n in s.deliveries) for s in rounds)
    return (
        f"{result.label}: at {GOAL_RATE:g}/s, {len(rounds)} round(s), median (min–max): "
        + ", ".join(parts)
        + f"; {met} of {len(rounds)} meet both goals"
    )


def _summary(result: Result) -> str:
    parts: list[str] = []
    step = _goal_step(result.steps)
    if step is None:
        return f"{result.label}: nothing measured"
    met = _ingest_met(step)
    reached = "" if step.offered >= GOAL_RATE else ", the highest rate run"
    parts.append(
        f"ingest {step.achieved:.0f}/s achieved of {step.offered:g}/s offered "
        f"({'meets' if met else 'misses'} 1,000/s{reached})"
    )
    for name, d in step.deliveries.items():
        ok = step.delivered_ok(name)
        parts.append(
            f"{name} lag p99 {pct(d.lags, 0.99):.0f} ms"
            + (f" with {d.missing} missing" if d.missing else "")
            + f" ({'meets' if ok else 'misses'} <= 1 s)"
        )
    best = _webhook_best(result)
    if result.webhook_steps:
        parts.append(
            "webhooks sustain "
            + (f"{best:g}/s" if best is not None else "none of the rates run")
            + " with lag p99 <= 1 s"
        )
    return f"{result.label}: " + "; ".join(parts)


def _print_table(title: str, steps: list[Step], consumers: tuple[str, ...]) -> None:
    print()
    print(title)
    lag_header = " ".join(f"{c + '50':>7} {c + '99':>7} {'miss':>5}" for c in consumers)
    header = (
        f"{'offered':>7} {'achieved':>8} {'accepted':>8} {'ref':>4} {'b50':>6} {'b99':>6} "
        f"{'late99':>6} {'errors':>6} {lag_header} {'rate/s':>7} {'busy%':>5} {'other%':>6} "
        + CPU_HEADER
    )
    print(header)
    print("-" * len(header))
    for step in steps:
        lags = " ".join(_lag_cells(step, c) for c in consumers)
        last = step.deliveries.get(consumers[-1]) if consumers else None
        print(
            f"{step.offered:>7.0f} {step.achieved:>8.1f} {step.accepted:>8} {step.refused:>4} "
            f"{pct(step.latencies, 0.5):>6.0f} {pct(step.latencies, 0.99):>6.0f} "
            f"{pct(step.late, 0.99):>6.0f} {step.errors:>6} {lags} "
            f"{(last.rate if last else 0.0):>7.1f} {step.busy:>5.0f} {step.other:>6.0f} "
            + _cpu_cells(step.cpu_ms)
        )


def print_report(config: Config, results: list[Result], notes: list[str]) -> None:
    print()
    print(
        f"events bench: NAV pushes {EVENT_TYPE} in batches of {config.batch} about "
        f"{config.participants} participants it follows; {config.duration:g} s per rate after "
        f"{config.warmup:g} s warm-up; {NCPU} CPU(s), the load generator and the consumers "
        "in this process on the same cores (bench)."
    )
    print(
        "Columns: achieved = accepted items / (first scheduled batch .. last answer, at least "
        "the offered duration); b50/b99 = batch request p50/p99 ms; late99 = how late the load "
        "generator started a batch (ms); <consumer>50/99 = delivery lag p50/p99 ms from the "
        "event's CloudEvents time to its receipt; miss = events not received "
        f"{config.drain:g} s after the last answer; rate/s = events delivered to the last "
        "consumer / (its first .. last receipt, at least the offered duration); busy% = the "
        "machine's CPU in use, other% = the part of it no measured process used (other work "
        "on the same cores: the figures are then pessimistic); CPU = ms per accepted event "
        "from /proc/<pid>/stat over the step and its delivery (pg = every postgres process, "
        "nats = the nats-server, both shared with anything else on the machine)."
    )
    for result in results:
        print()
        print(f"== {result.label}")
        for phase in result.phases:
            print(
                f"set-up {phase.what}: {phase.count} calls in {phase.seconds:.1f} s "
                f"= {phase.rate:.1f}/s"
            )
        consumers = tuple(result.steps[0].deliveries) if result.steps else ()
        if result.steps:
            names = {"feed": "the changes feed", "nats": "a NATS consumer"}
            _print_table(
                "ingest"
                + (", and delivery to " if consumers else "")
                + " and ".join(names[c] for c in consumers)
                + ":",
                result.steps,
                consumers,
            )
            if result.feed_polls:
                print(
                    f"feed polls: {len(result.feed_polls)}, p50/p99 "
                    f"{pct(result.feed_polls, 0.5):.1f}/{pct(result.feed_polls, 0.99):.1f} ms"
                )
            if result.skipped:
                print(f"not run: {', '.join(f'{r:g}' for r in result.skipped)}/s (overloaded)")
            if len(result.goal_rounds) > 1:
                _print_table(
                    f"ingest at {GOAL_RATE:g}/s again (rounds 2..{len(result.goal_rounds)}):",
                    result.goal_rounds[1:],
                    consumers,
                )
        if result.webhook_steps:
            _print_table(
                "webhooks (the feed poller and NATS consumer stopped):",
                result.webhook_steps,
                ("webhook",),
            )
            if result.webhook_skipped:
                print(
                    f"not run: {', '.join(f'{r:g}' for r in result.webhook_skipped)}/s (overloaded)"
                )
        for step in (*result.steps, *result.goal_rounds[1:], *result.webhook_steps):
            for sample in step.samples:
                print(f"  at {step.offered:g}/s: {sample}")
        for note in (*result.consumer_notes, *result.notes):
            print(note)
    print()
    print(
        f"summary (goals: {GOAL_RATE:,.0f} events/s ingested, delivery lag p99 <= "
        f"{GOAL_LAG_MS / 1000:g} s):"
    )
    for result in results:
        print("  " + _summary(result))
    for result in results:
        line = _goal_rounds_line(result)
        if line:
            print("  " + line)
    print(
        f"(clock ticks: {CLK_TCK}/s; a p99 over few events is close to their maximum; the lag "
        "includes the consumer's own wait: the feed poller's pause of "
        f"{config.poll_interval:g} s when caught up.)"
    )
    for note in notes:
        print(note)


def _step_data(step: Step) -> dict[str, Any]:
    return {
        "offered": step.offered,
        "achieved": step.achieved,
        "accepted": step.accepted,
        "refused": step.refused,
        "batch_p50_ms": pct(step.latencies, 0.5),
        "batch_p99_ms": pct(step.latencies, 0.99),
        "errors": step.errors,
        "deliveries": {
            name: {
                "lag_p50_ms": pct(d.lags, 0.5),
                "lag_p99_ms": pct(d.lags, 0.99),
                "missing": d.missing,
                "rate": d.rate,
                "ok": step.delivered_ok(name),
            }
            for name, d in step.deliveries.items()
        },
        "busy_pct": step.busy,
        "other_pct": step.other,
        "cpu_ms": step.cpu_ms,
        "ingest_met": _ingest_met(step),
        "samples": step.samples,
    }


def record(results: Results, found: list[Result], notes: list[str]) -> None:
    runs = []
    for result in found:
        rounds = result.goal_rounds
        consumers = tuple(rounds[0].deliveries) if rounds else ()
        runs.append(
            {
                "label": result.label,
                "backend": result.backend,
                "transport": result.transport,
                "phases": [
                    {"what": p.what, "count": p.count, "seconds": p.seconds, "rate": p.rate}
                    for p in result.phases
                ],
                "steps": [_step_data(s) for s in result.steps],
                "skipped": result.skipped,
                "goal_rate": {
                    "rate": GOAL_RATE,
                    "rounds": len(rounds),
                    "achieved": spread([s.achieved for s in rounds]),
                    "lag_p99_ms": {
                        name: spread(
                            [
                                pct(s.deliveries[name].lags, 0.99)
                                for s in rounds
                                if name in s.deliveries
                            ]
                        )
                        for name in consumers
                    },
                    "met": sum(
                        _ingest_met(s) and all(s.delivered_ok(n) for n in s.deliveries)
                        for s in rounds
                    ),
                    "steps": [_step_data(s) for s in rounds[1:]],
                }
                if rounds
                else None,
                "webhook_steps": [_step_data(s) for s in result.webhook_steps],
                "webhook_skipped": result.webhook_skipped,
                "webhook_best_rate": _webhook_best(result),
                "feed_polls": len(result.feed_polls),
                "notes": [*result.consumer_notes, *result.notes],
            }
        )
    results.data["runs"] = runs
    results.data["goals"] = {"rate": GOAL_RATE, "lag_p99_ms": GOAL_LAG_MS}
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
    results_file = Results("events", config.settings())
    notes: list[str] = []
    log(
        f"bench events: backends {', '.join(config.backends)}; transports "
        f"{', '.join(config.transports)}; rates {', '.join(f'{r:g}' for r in config.rates)}/s; "
        f"webhook rates {', '.join(f'{r:g}' for r in config.webhook_rates) or 'none'}/s"
    )
    if "postgresql" not in config.backends and "BENCH_BACKENDS" not in os.environ:
        notes.append("PostgreSQL: skipped, nothing answers on 127.0.0.1:5432.")
    if "nats" not in config.transports and "BENCH_TRANSPORTS" not in os.environ:
        notes.append(f"NATS: skipped, nothing answers at {config.nats_url}.")

    def finish(results: list[Result]) -> None:
        print_report(config, results, notes)
        record(results_file, results, notes)

    cases = [
        (f"{backend} / {TRANSPORT_NAMES[transport]}", partial(Result, backend, transport))
        for backend in config.backends
        for transport in config.transports
    ]

    def run(result: Result, procs: Processes, workdir: Path) -> None:
        bench_one(config, result.backend, result.transport, procs, workdir, result)

    return run_cases("broen-bench-events-", cases, run, finish, results_file, notes)


if __name__ == "__main__":
    sys.exit(main())
