"""`make bench` (load): concurrent clients of mixed traffic through the gateway, with Locust.

Starts the participant, consent and messaging services and the gateway as real processes
on loopback (`broen serve ...`, production mode, as bench/messaging.py does) and builds
the same world: NAV and a school, each with an API client; a NAV veileder and a
kontaktlærer; BENCH_LOAD_PARTICIPANTS participants (100) registered by both, both staff
assigned, consents for messages both ways (school to NAV, NAV to school), and
BENCH_LOAD_THREADS_PER_PARTICIPANT threads each (5) opened by the kontaktlærer to the
veileder. Then, for each number of users in BENCH_LOAD_USERS ("10,40,80"), it runs Locust
headless (bench/locustfile.py) for BENCH_LOAD_DURATION s (30):

  * kontaktlærer and veileder users (half each, staff tokens) with a think time of
    BENCH_LOAD_THINK s ("0.1,0.5": uniform between), each request one of: a participant
    card (weight 6), the inbox's first page (3), a reply in a thread (1);
  * BENCH_LOAD_NAV_USERS (2) NAV systems (a system token), on top of those users, each
    pushing a batch of BENCH_LOAD_BATCH (20) timeline events every BENCH_LOAD_NAV_PACING s
    (1).

Per request type it reports Locust's req/s, p50/p95/p99 and failures, the aggregate
req/s in the steady state (all users running), and the CPU of each process over that
steady state from /proc/<pid>/stat: the four Broen processes, every postgres process on
PostgreSQL, Locust itself and this script, as % of one core and ms per request, with
the machine's busy %. Runs on SQLite, and on PostgreSQL when one answers on
127.0.0.1:5432. Results also go to BENCH_RESULTS_DIR/load.json (default var/bench/).

Figures, not asserts.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/load.py` puts bench/ first, not the root
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    NCPU,
    BenchError,
    CpuSnapshot,
    Processes,
    Results,
    backends_from_env,
    busy_pct,
    catch_signals,
    cpu_seconds,
    env_float,
    env_int,
    env_numbers,
    log,
    other_pct,
    run_cases,
    snapshot,
)
from bench.events import EVENT_TYPE, PAYLOAD  # noqa: E402
from bench.messaging import (  # noqa: E402
    PURPOSE,
    SCOPES,
    Phase,
    Stack,
    Tokens,
    bounded,
    enrol,
    expect,
    messaging_stack,
    open_threads,
)
from bench.messaging import Config as WorldConfig  # noqa: E402

LOAD_SCOPES = (*SCOPES, "events:write")
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
MIX = {"card": 6, "inbox": 3, "reply": 1}
MAX_DURATION_S = 240.0  # the access tokens handed to Locust live 300 s
STEADY_MARGIN_S = 1.0  # the last second of a run (users stopping) is left out
REQUEST_TIMEOUT_S = 10.0


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    users: tuple[int, ...]
    duration: float
    think: tuple[float, float]
    nav_users: int
    nav_pacing: float
    batch: int
    backends: tuple[str, ...]
    participants: int
    threads_each: int
    setup_concurrency: int

    @classmethod
    def from_env(cls) -> Config:
        users = tuple(int(u) for u in env_numbers("BENCH_LOAD_USERS", "10,40,80") if u >= 1)
        if not users:
            raise BenchError("BENCH_LOAD_USERS needs at least one number of users")
        think = env_numbers("BENCH_LOAD_THINK", "0.1,0.5")
        if len(think) != 2 or think[0] > think[1]:
            raise BenchError("BENCH_LOAD_THINK is two numbers of seconds, low,high")
        duration = env_float("BENCH_LOAD_DURATION", 30.0)
        if duration > MAX_DURATION_S:
            log(f"BENCH_LOAD_DURATION={duration:g} capped at {MAX_DURATION_S:g} s (tokens)")
        batch = env_int("BENCH_LOAD_BATCH", 20)
        if batch > 1000:
            raise BenchError("BENCH_LOAD_BATCH: a batch holds at most 1,000 items")
        return cls(
            users=users,
            duration=min(max(duration, 5.0), MAX_DURATION_S),
            think=(think[0], think[1]),
            nav_users=env_int("BENCH_LOAD_NAV_USERS", 2, low=0),
            nav_pacing=max(env_float("BENCH_LOAD_NAV_PACING", 1.0), 0.01),
            batch=batch,
            backends=backends_from_env(),
            participants=env_int("BENCH_LOAD_PARTICIPANTS", 100),
            threads_each=env_int("BENCH_LOAD_THREADS_PER_PARTICIPANT", 5),
            setup_concurrency=env_int("BENCH_SETUP_CONCURRENCY", 8),
        )

    def settings(self) -> dict[str, Any]:
        return {
            "users": list(self.users),
            "duration_s": self.duration,
            "think_s": list(self.think),
            "mix": MIX,
            "nav_users": self.nav_users,
            "nav_pacing_s": self.nav_pacing,
            "batch": self.batch,
            "offered_events_per_s": self.nav_users * self.batch / self.nav_pacing,
            "backends": list(self.backends),
            "participants": self.participants,
            "threads": self.participants * self.threads_each,
            "load_generator": f"Locust {locust_version()} (FastHttpUser), one process, "
            "on the same cores",
        }

    def world(self) -> WorldConfig:
        """What bench/messaging.py's set-up reads; its measuring settings are not used."""
        return WorldConfig(
            duration=0.0,
            warmup=0.0,
            rounds=1,
            rates=(),
            backends=self.backends,
            participants=self.participants,
            threads_each=self.threads_each,
            setup_concurrency=self.setup_concurrency,
            inbox_requests=0,
            visible_every=1,
        )


def locust_executable() -> str:
    beside = Path(sys.executable).parent / "locust"
    found = str(beside) if beside.exists() else shutil.which("locust")
    if not found:
        raise BenchError("locust is not installed (it is in the dev extras: make .venv/.installed)")
    return found


def locust_version() -> str:
    try:
        from importlib.metadata import version

        return version("locust")
    except Exception:
        return "(not installed)"


# --- the world --------------------------------------------------------------------------------


async def nav_consents(
    config: Config, stack: Stack, http: httpx.AsyncClient, tokens: Tokens, participants: list[str]
) -> Phase:
    """NAV's recorded consent for messages to the school, so the veileder can reply too."""

    async def one(participant_id: str, number: int) -> None:
        await expect(
            http.post(
                "/api/v1/consents",
                json={
                    "participant_id": participant_id,
                    "disclosers": ["nav"],
                    "recipients": ["skole"],
                    "purposes": [PURPOSE],
                    "categories": ["messages"],
                    "grantor": "participant",
                    "collection_method": "paper",
                    "evidence": f"Signert skjema, NAV-sak {number}",
                    "notice": {
                        "version": "nav-samtykke-1",
                        "hash": "sha256:" + "cd" * 32,
                        "language": "nb",
                    },
                },
                headers=await tokens.headers(stack.nav, purpose=True),
            ),
            201,
            "NAV's POST /api/v1/consents",
        )

    jobs: list[Callable[[], Awaitable[None]]] = [
        partial(one, p, i) for i, p in enumerate(participants, 1)
    ]
    started = time.perf_counter()
    await bounded(config.setup_concurrency, jobs)
    return Phase("NAV's consents", len(jobs), time.perf_counter() - started, [], {})


@dataclass
class World:
    participants: list[str]
    threads: list[str]
    phases: list[Phase]


async def build_world(config: Config, stack: Stack, with_pg: bool) -> World:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=REQUEST_TIMEOUT_S) as http:
        tokens = Tokens(http, stack.issuer, LOAD_SCOPES)
        participants, enrolled = await enrol(config.world(), stack, http, tokens, with_pg)
        consented = await nav_consents(config, stack, http, tokens, participants)
        threads, opened = await open_threads(
            config.world(), stack, http, tokens, participants, with_pg
        )
    return World(participants, [t for own in threads for t in own], [enrolled, consented, opened])


async def fresh_tokens(stack: Stack) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=REQUEST_TIMEOUT_S) as http:
        tokens = Tokens(http, stack.issuer, LOAD_SCOPES)
        return {
            "kontaktlaerer": await tokens.get(stack.skole, stack.teacher),
            "veileder": await tokens.get(stack.nav, stack.veileder),
            "nav": await tokens.get(stack.nav),
        }


# --- one Locust run ---------------------------------------------------------------------------


@dataclass
class Level:
    backend: str
    users: int  # staff users; the NAV systems come on top
    requests: list[dict[str, Any]] = field(default_factory=list)  # per type, and "Aggregated"
    failures: list[dict[str, Any]] = field(default_factory=list)
    steady_s: float = 0.0
    steady_rps: float = 0.0
    steady_failures_per_s: float = 0.0
    cpu_pct: dict[str, float] = field(default_factory=dict)  # % of one core
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per request
    busy_pct: float = 0.0
    other_pct: float = 0.0
    locust_warnings: list[str] = field(default_factory=list)


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0


def read_stats(prefix: Path) -> list[dict[str, Any]]:
    rows = []
    with (prefix.parent / f"{prefix.name}_stats.csv").open() as handle:
        for row in csv.DictReader(handle):
            rows.append(
                {
                    "name": row["Name"] if row["Name"] != "Aggregated" else "all requests",
                    "method": row["Type"],
                    "requests": int(row["Request Count"]),
                    "failures": int(row["Failure Count"]),
                    "rps": _number(row["Requests/s"]),
                    "p50_ms": _number(row["50%"]),
                    "p95_ms": _number(row["95%"]),
                    "p99_ms": _number(row["99%"]),
                    "max_ms": _number(row["Max Response Time"]),
                }
            )
    return rows


def read_failures(prefix: Path) -> list[dict[str, Any]]:
    path = prefix.parent / f"{prefix.name}_failures.csv"
    if not path.exists():
        return []
    with path.open() as handle:
        return [
            {"name": r["Name"], "error": r["Error"][:300], "count": int(r["Occurrences"])}
            for r in csv.DictReader(handle)
        ]


def steady_window(prefix: Path, users: int) -> tuple[float, float, float, float]:
    """(start, end, req/s, failures/s) over the rows of the stats history where every
    user was running, from Locust's cumulative counts."""
    rows = []
    with (prefix.parent / f"{prefix.name}_stats_history.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated" and int(row["User Count"] or 0) >= users:
                rows.append(
                    (
                        float(row["Timestamp"]),
                        int(row["Total Request Count"]),
                        int(row["Total Failure Count"]),
                    )
                )
    if len(rows) < 2:
        raise BenchError("Locust's stats history has no steady state (a run too short?)")
    rows = [r for r in rows if r[0] <= rows[-1][0] - STEADY_MARGIN_S] or rows
    (t0, n0, f0), (t1, n1, f1) = rows[0], rows[-1]
    span = max(t1 - t0, 1e-9)
    return t0, t1, (n1 - n0) / span, (f1 - f0) / span


def cpu_over(
    samples: list[tuple[float, CpuSnapshot]], start: float, end: float, with_pg: bool
) -> tuple[dict[str, float], float, float, float]:
    """(CPU seconds per process, seconds, busy %, other %) between the first and the last
    sample inside [start, end]; the samples are (time.time(), snapshot)."""
    inside = [s for s in samples if start <= s[0] <= end] or samples
    (t0, before), (t1, after) = inside[0], inside[-1]
    cpu = cpu_seconds(before, after, with_pg)
    cpu["bench"] = cpu.pop("loadgen")  # this script: here it only samples
    return cpu, max(t1 - t0, 1e-9), busy_pct(before, after), other_pct(before, after, with_pg)


def run_locust(
    config: Config, stack: Stack, world: World, users: int, workdir: Path, backend: str
) -> Level:
    with_pg = backend == "postgresql"
    level = Level(backend, users)
    tokens = asyncio.run(fresh_tokens(stack))
    world_file = workdir / f"world-{users}.json"
    world_file.write_text(
        json.dumps(
            {
                "participants": world.participants,
                "threads": world.threads,
                "tokens": tokens,
                "purpose": PURPOSE,
                "think_s": list(config.think),
                "mix": MIX,
                "nav_users": config.nav_users,
                "nav_pacing_s": config.nav_pacing,
                "batch": config.batch,
                "event": {"type": EVENT_TYPE, "payload": PAYLOAD},
            }
        )
    )
    prefix = workdir / f"locust-{level.backend}-{users}"
    total = users + config.nav_users
    argv = [
        locust_executable(),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        stack.gateway_url,
        "-u",
        str(total),
        "-r",
        str(total),  # all users within the first second
        "-t",
        f"{config.duration:g}s",
        "--csv",
        str(prefix),
        "--only-summary",
        "--stop-timeout",
        "5",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    env = {**os.environ, "BENCH_LOAD_WORLD": str(world_file)}
    log_path = workdir / f"locust-{level.backend}-{users}.log"
    with log_path.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            argv,
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        pids = {**stack.pids, "locust": process.pid}
        samples: list[tuple[float, CpuSnapshot]] = []
        try:
            deadline = time.monotonic() + config.duration + 60
            while process.poll() is None:
                if time.monotonic() > deadline:
                    raise BenchError(f"Locust did not finish within {config.duration + 60:g} s")
                samples.append((time.time(), snapshot(pids, with_pg)))
                time.sleep(0.5)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    text = log_path.read_text(errors="replace")
    if process.returncode != 0:
        raise BenchError(f"locust exited with {process.returncode}:\n{text[-2000:]}")
    level.locust_warnings = [
        line.strip() for line in text.splitlines() if "WARNING" in line or "ERROR" in line
    ][:5]
    level.requests = read_stats(prefix)
    level.failures = read_failures(prefix)
    start, end, level.steady_rps, level.steady_failures_per_s = steady_window(prefix, total)
    # The process's last sample is before it exited: the window ends there at the latest.
    alive = [s for s in samples if s[1].per_process["locust"] > 0]
    cpu, seconds, level.busy_pct, level.other_pct = cpu_over(
        alive, start, min(end, alive[-1][0] if alive else end), with_pg
    )
    level.steady_s = seconds
    level.cpu_pct = {name: 100.0 * s / seconds for name, s in cpu.items()}
    done = max(level.steady_rps * seconds, 1.0)
    level.cpu_ms = {name: 1000.0 * s / done for name, s in cpu.items()}
    return level


def _level_line(level: Level) -> str:
    return (
        f"[{level.backend}] {level.users} staff users: {level.steady_rps:.0f} req/s steady "
        f"({level.steady_failures_per_s:.1f} failures/s), busy {level.busy_pct:.0f}% "
        f"(other {level.other_pct:.0f}%); % of a core: "
        + " ".join(f"{k}={v:.0f}" for k, v in level.cpu_pct.items())
    )


# --- one backend ------------------------------------------------------------------------------


@dataclass
class Result:
    backend: str
    phases: list[Phase] = field(default_factory=list)
    levels: list[Level] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def bench_backend(
    config: Config, backend: str, procs: Processes, workdir: Path, result: Result
) -> None:
    with_pg = backend == "postgresql"
    log(f"\n[{backend}] setting up (migrations, 4 processes, organisations, clients, staff)")
    with messaging_stack(backend, procs, workdir, LOAD_SCOPES) as stack:
        troubled = True
        try:
            log(
                f"[{backend}] the world: {config.participants} participants, "
                f"{config.participants * config.threads_each} threads"
            )
            world = asyncio.run(build_world(config, stack, with_pg))
            result.phases = world.phases
            for phase in world.phases:
                log(f"  {phase.what}: {phase.count} calls in {phase.seconds:.1f} s")
            for users in config.users:
                log(
                    f"[{backend}] Locust: {users} staff users + {config.nav_users} NAV systems, "
                    f"{config.duration:g} s"
                )
                level = run_locust(config, stack, world, users, workdir, backend)
                result.levels.append(level)
                log("  " + _level_line(level))
                time.sleep(1.0)  # let in-flight work (relays, group commits) settle
            troubled = any(level.failures for level in result.levels)
        finally:
            if troubled:
                for server in procs.servers:
                    tail = server.log_tail(30).strip()
                    if tail and tail != "(no log)":
                        log(f"--- {backend} {server.name} log, last lines ---\n{tail}")


# --- report -----------------------------------------------------------------------------------

CPU_ORDER = ("gateway", "participant", "consent", "messaging", "postgres", "locust", "bench")


def print_report(config: Config, results: list[Result], notes: list[str]) -> None:
    print()
    print(
        f"load bench: Locust {locust_version()} headless, {config.duration:g} s per run; staff "
        f"users (kontaktlærer and veileder, half each) with {config.think[0]:g}–"
        f"{config.think[1]:g} s think time, requests card:inbox:reply = "
        f"{MIX['card']}:{MIX['inbox']}:{MIX['reply']}; {config.nav_users} NAV systems each "
        f"pushing {config.batch} events every {config.nav_pacing:g} s; {NCPU} CPU(s), Locust "
        "on the same cores."
    )
    print(
        "Per request type: Locust's figures over the whole run (ms). steady = all users "
        "running; CPU over the steady state from /proc/<pid>/stat as % of one core "
        f"(the machine has {NCPU * 100}%) and ms per request; pg = every postgres process; "
        "bench = this script."
    )
    for result in results:
        print()
        print(f"== {result.backend}")
        for phase in result.phases:
            print(f"set-up {phase.what}: {phase.count} calls in {phase.seconds:.1f} s")
        for level in result.levels:
            print()
            print(
                f"{level.users} staff users + {config.nav_users} NAV systems: "
                f"{level.steady_rps:.0f} req/s in the steady state "
                f"({level.steady_s:.0f} s), {level.steady_failures_per_s:.1f} failures/s; "
                f"machine busy {level.busy_pct:.0f}% (other work {level.other_pct:.0f}%)"
            )
            header = (
                f"{'request':<44} {'count':>6} {'fail':>5} {'req/s':>7} {'p50':>6} "
                f"{'p95':>6} {'p99':>6}"
            )
            print(header)
            print("-" * len(header))
            for row in level.requests:
                print(
                    f"{row['name'][:44]:<44} {row['requests']:>6} {row['failures']:>5} "
                    f"{row['rps']:>7.1f} {row['p50_ms']:>6.0f} {row['p95_ms']:>6.0f} "
                    f"{row['p99_ms']:>6.0f}"
                )
            names = [k for k in CPU_ORDER if k in level.cpu_pct]
            print("CPU      " + " ".join(f"{k:>11}" for k in names))
            print("% core   " + " ".join(f"{level.cpu_pct[k]:>11.0f}" for k in names))
            print("ms/req   " + " ".join(f"{level.cpu_ms[k]:>11.2f}" for k in names))
            for failure in level.failures[:5]:
                print(f"  failure x{failure['count']}: {failure['name']}: {failure['error']}")
            for warning in level.locust_warnings:
                print(f"  locust: {warning}")
        for note in result.notes:
            print(note)
    for note in notes:
        print(note)


def record(results_file: Results, results: list[Result], notes: list[str]) -> None:
    results_file.data["backends"] = [
        {
            "backend": r.backend,
            "phases": [
                {"what": p.what, "count": p.count, "seconds": p.seconds, "rate": p.rate}
                for p in r.phases
            ],
            "levels": [
                {
                    "users": level.users,
                    "requests": level.requests,
                    "failures": level.failures,
                    "steady_s": level.steady_s,
                    "steady_rps": level.steady_rps,
                    "steady_failures_per_s": level.steady_failures_per_s,
                    "cpu_pct": level.cpu_pct,
                    "cpu_ms": level.cpu_ms,
                    "busy_pct": level.busy_pct,
                    "other_pct": level.other_pct,
                    "locust_warnings": level.locust_warnings,
                }
                for level in r.levels
            ],
            "notes": r.notes,
        }
        for r in results
    ]
    results_file.data["notes"] = notes
    results_file.write()


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    catch_signals()
    try:
        config = Config.from_env()
        locust_executable()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    results_file = Results("load", config.settings())
    notes: list[str] = []
    log(
        f"bench load: backends {', '.join(config.backends)}; staff users "
        f"{', '.join(map(str, config.users))}; {config.duration:g} s each"
    )
    if "postgresql" not in config.backends and "BENCH_BACKENDS" not in os.environ:
        notes.append("PostgreSQL: skipped, nothing answers on 127.0.0.1:5432.")

    def finish(results: list[Result]) -> None:
        print_report(config, results, notes)
        record(results_file, results, notes)

    cases = [(backend, partial(Result, backend)) for backend in config.backends]

    def run(result: Result, procs: Processes, workdir: Path) -> None:
        bench_backend(config, result.backend, procs, workdir, result)

    return run_cases("broen-bench-load-", cases, run, finish, results_file, notes)


if __name__ == "__main__":
    sys.exit(main())
