"""`make bench`: read one participant through the gateway vs. directly from the service.

Starts the participant service and the gateway as real processes on loopback
(`broen serve ...`, production mode), sets up an organisation, an API client and one
participant, then measures `GET /api/v1/participants/{id}`:

  * through the gateway (`Authorization: Bearer <access token>`, `Broen-Purpose`): token
    check, the personvern decision and projection, and the decision appended to the audit
    log (committed before the answer; group commit), and
  * directly from the participant service (`Broen-Internal-Token`, signed here),

at 8 and 32 concurrent connections, with wrk when it is installed (otherwise with a
small asyncio + httpx load generator in this script). Each round measures direct and
gateway back to back at each connection count, so each round gives its own ratio; the
rounds give each figure as a median with its spread (min–max). For each run it prints
req/s, p50/p99 latency and the CPU time per request of every process involved, taken from
/proc/<pid>/stat. Runs on SQLite, and on PostgreSQL when one answers on 127.0.0.1:5432.
When ../shared/bench is set up (see its README), its naive proxy (proxy.py in front of
dbread.py) is measured the same way, for comparison. The figures also go to
BENCH_RESULTS_DIR/run.json (default var/bench/) for bench/report.py.

Environment: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, default 2, before the first
round only), BENCH_ROUNDS (3), BENCH_BACKENDS ("sqlite,postgresql"; default: both,
PostgreSQL only when reachable), BENCH_CONNECTIONS ("8,32"), BENCH_THREADS (wrk threads,
2), BENCH_LOADGEN (wrk|python), BENCH_NAIVE (1; 0 skips the naive baseline),
BENCH_SHARED_DIR (../shared/bench), BENCH_NAIVE_VENV (/tmp/benchvenv).

Figures, not asserts: the goal in docs/PERFORMANCE.md (gateway/direct >= 0.5 with policy and
audit) is something to read off the table, never something this script enforces.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/ first, not the project root
    sys.path.insert(0, str(ROOT))

from joserfc import jwt  # noqa: E402
from joserfc.jwk import OKPKey  # noqa: E402

from bench.common import (  # noqa: E402
    LOOPBACK,
    NCPU,
    BenchError,
    Interrupted,
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
    free_port,
    log,
    other_pct,
    pct,
    postgres_admin,
    postgres_answers,
    rounds_from_env,
    snapshot,
    spread,
    spread_text,
)
from shared.internal_auth import HEADER as INTERNAL_HEADER  # noqa: E402
from shared.internal_auth import CallerContext, InternalTokenSigner  # noqa: E402
from shared.keys import init_keys_dir, load_internal_signing_key  # noqa: E402
from shared.migrations import upgrade  # noqa: E402

ORGNR, AGENCY_TYPE = "310123455", "skole"  # synthetic organisation number (valid check digit)
CLIENT_ID = "bench-client"
SCOPES = ("participants:read", "participants:write")
PARTICIPANT_BODY = {"national_id": "15080551212", "name": "Bench Person", "source_system": "bench"}
MIGRATIONS = {
    "gateway": ROOT / "gateway" / "migrations",
    "participant": ROOT / "services" / "participant" / "migrations",
    "consent": ROOT / "services" / "consent" / "migrations",
}
NAIVE_VENV = "/tmp/benchvenv"  # noqa: S108 - where ../shared/bench/README.md puts it
NAIVE_DSN = "postgresql://bench:bench@127.0.0.1:5432/benchdb"  # its documented role
WRK_TIMEOUT_S = 10  # a slower answer is a timeout (an error), not a latency sample
MAX_DURATION_S = 50.0  # an internal token lives 60 s; one is signed per wrk run
GOAL_RATIO = 0.5  # gateway/direct with policy and audit (docs/PERFORMANCE.md)
WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d sockerr=%d timeouts=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write, e.timeout))
end
"""


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    duration: float
    warmup: float
    rounds: int
    connections: tuple[int, ...]
    threads: int
    backends: tuple[str, ...]
    loadgen: str  # "wrk" or "python"
    loadgen_note: str
    naive: bool
    shared_dir: Path
    naive_venv: Path

    @classmethod
    def from_env(cls) -> Config:
        duration = env_float("BENCH_DURATION", 10.0)
        if duration > MAX_DURATION_S:
            log(
                f"BENCH_DURATION={duration:g} capped at {MAX_DURATION_S:g} s "
                "(the directly used internal token lives 60 s)"
            )
            duration = MAX_DURATION_S
        duration = max(duration, 1.0)
        warmup = min(max(env_float("BENCH_WARMUP", 2.0), 0.0), MAX_DURATION_S)
        connections = tuple(
            int(c)
            for c in os.environ.get("BENCH_CONNECTIONS", "8,32").replace(" ", ",").split(",")
            if c.strip()
        )
        threads = env_int("BENCH_THREADS", 2)
        wanted = os.environ.get("BENCH_LOADGEN", "wrk")
        if wanted == "python":
            loadgen, note = (
                "python",
                "asyncio+httpx load generator in this script (BENCH_LOADGEN=python)",
            )
        elif shutil.which("wrk"):
            loadgen, note = "wrk", f"wrk -t{threads} --latency --timeout {WRK_TIMEOUT_S}s"
        else:
            loadgen = "python"
            note = (
                "wrk is not installed (apt-get install -y wrk): using the asyncio+httpx load "
                "generator in this script; it shares the cores with the servers and costs "
                "far more CPU per request than wrk, so req/s are lower than wrk's would be"
            )
        return cls(
            duration=duration,
            warmup=warmup,
            rounds=rounds_from_env(3),
            connections=connections,
            threads=threads,
            backends=backends_from_env(),
            loadgen=loadgen,
            loadgen_note=note,
            naive=os.environ.get("BENCH_NAIVE", "1") != "0",
            shared_dir=Path(os.environ.get("BENCH_SHARED_DIR", ROOT.parent / "shared" / "bench")),
            naive_venv=Path(os.environ.get("BENCH_NAIVE_VENV", NAIVE_VENV)),
        )

    def settings(self) -> dict[str, Any]:
        return {
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "rounds": self.rounds,
            "connections": list(self.connections),
            "backends": list(self.backends),
            "load_generator": self.loadgen_note,
            "wrk_threads": self.threads if self.loadgen == "wrk" else None,
        }


# --- load generation --------------------------------------------------------------------------


@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    sockerr: int
    timeouts: int = 0

    @property
    def errors(self) -> int:
        return self.non2xx + self.sockerr + self.timeouts

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(
    config: Config, url: str, headers: dict[str, str], connections: int, seconds: float, lua: Path
) -> Load:
    argv = [
        "wrk",
        f"-t{min(config.threads, connections)}",
        f"-c{connections}",
        f"-d{max(int(round(seconds)), 1)}s",
        "--latency",
        "--timeout",
        f"{WRK_TIMEOUT_S}s",
        "-s",
        str(lua),
    ]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    result = subprocess.run(  # noqa: S603 - fixed argv, loopback URL
        argv,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed ({result.returncode}): {result.stderr.strip() or result.stdout}"
        )
    values = dict(item.split("=", 1) for item in line.split()[1:])
    return Load(
        requests=int(values["requests"]),
        seconds=int(values["duration_us"]) / 1e6,
        p50_ms=int(values["p50_us"]) / 1000,
        p99_ms=int(values["p99_us"]) / 1000,
        non2xx=int(values["non2xx"]),
        sockerr=int(values["sockerr"]),
        timeouts=int(values["timeouts"]),
    )


async def _python_load(url: str, headers: dict[str, str], connections: int, seconds: float) -> Load:
    latencies: list[float] = []
    counts = {"non2xx": 0, "sockerr": 0, "timeouts": 0}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10.0, headers=headers) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + seconds

        async def worker() -> None:
            while loop.time() < deadline:
                begun = time.perf_counter()
                try:
                    response = await client.get(url)
                except httpx.TimeoutException:
                    counts["timeouts"] += 1
                    continue
                except httpx.HTTPError:
                    counts["sockerr"] += 1
                    continue
                latencies.append(time.perf_counter() - begun)
                if not 200 <= response.status_code < 300:
                    counts["non2xx"] += 1

        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(connections))), timeout=seconds + 30
        )
        elapsed = loop.time() - started
    return Load(
        len(latencies),
        elapsed,
        pct(latencies, 0.50),
        pct(latencies, 0.99),
        counts["non2xx"],
        counts["sockerr"],
        counts["timeouts"],
    )


def generate_load(
    config: Config, url: str, headers: dict[str, str], connections: int, seconds: float, lua: Path
) -> Load:
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise BenchError(f"refusing a non-loopback target {url}")
    if config.loadgen == "wrk":
        return run_wrk(config, url, headers, connections, seconds, lua)
    return asyncio.run(_python_load(url, headers, connections, seconds))


# --- results ----------------------------------------------------------------------------------


@dataclass
class Row:
    suite: str  # "sqlite", "postgresql", "naive"
    target: str  # "gateway" / "direct" (or "proxy" / "dbread")
    connections: int
    round: int  # 1, 2, ...
    load: Load
    cpu_ms: dict[str, float]  # per request
    busy_pct: float
    other_pct: float  # the machine's CPU used by processes outside the bench
    notes: list[str] = field(default_factory=list)  # make the figures invalid
    info: list[str] = field(default_factory=list)


def measure(
    config: Config,
    suite: str,
    target: str,
    url: str,
    headers_for: Callable[[], dict[str, str]],
    connections: int,
    round_no: int,
    processes: dict[str, int],
    with_postgres: bool,
    lua: Path,
) -> Row:
    """One measured run (after a discarded warm-up in the first round); headers are made
    fresh for each run."""
    if config.warmup > 0 and round_no == 1:
        generate_load(config, url, headers_for(), connections, config.warmup, lua)
        time.sleep(0.5)
    headers = headers_for()
    before = snapshot(processes, with_postgres)
    load = generate_load(config, url, headers, connections, config.duration, lua)
    after = snapshot(processes, with_postgres)
    time.sleep(0.5)  # let in-flight work drain before the next run
    cpu_ms = cpu_per(before, after, processes, with_postgres, load.requests)
    info = []
    if with_postgres:
        started = len(after.postgres.keys() - before.postgres.keys())
        ended = len(before.postgres.keys() - after.postgres.keys())
        if started or ended:
            info.append(f"postgres processes: {started} started, {ended} ended during the run")
    row = Row(
        suite,
        target,
        connections,
        round_no,
        load,
        cpu_ms,
        busy_pct(before, after),
        other_pct(before, after, with_postgres),
        info=info,
    )
    if load.errors:
        row.notes.append(
            f"{load.non2xx} non-2xx, {load.sockerr} socket errors, {load.timeouts} timeouts "
            f"(> {WRK_TIMEOUT_S} s) out of {load.requests} requests"
        )
    cpus = " ".join(f"{k}={v:.2f}" for k, v in cpu_ms.items())
    log(
        f"  {suite:<10} {target:<8} c={connections:<3} r{round_no} {load.rps:8.0f} req/s  "
        f"p50 {load.p50_ms:6.2f} ms  p99 {load.p99_ms:7.2f} ms  cpu ms/req: {cpus}"
        + (f"  !! {'; '.join(row.notes)}" if row.notes else "")
        + (f"  ({'; '.join(row.info)})" if row.info else "")
    )
    return row


def rounds(
    config: Config,
    suite: str,
    targets: list[tuple[str, str, Callable[[], dict[str, str]]]],
    processes: dict[str, int],
    with_postgres: bool,
    lua: Path,
    rows: list[Row],
) -> None:
    """BENCH_ROUNDS rounds; in each, every target at every connection count back to back,
    so each round gives its own ratios."""
    for round_no in range(1, config.rounds + 1):
        for connections in config.connections:
            for target, url, headers_for in targets:
                rows.append(
                    measure(
                        config,
                        suite,
                        target,
                        url,
                        headers_for,
                        connections,
                        round_no,
                        processes,
                        with_postgres,
                        lua,
                    )
                )


async def _add_organisation(database_url: str) -> None:
    from services.participant import store
    from shared.db import make_engine, make_sessionmaker

    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            await store.add_organisation(
                session,
                orgnr=ORGNR,
                name="Bench skole",
                agency_type=AGENCY_TYPE,
                county=None,
                now=datetime.now(UTC),
            )
    finally:
        await engine.dispose()


def _register_client(
    database_url: str, keys_dir: Path, issuer: str, public_jwk: dict[str, Any]
) -> None:
    from gateway.oauth import register_client
    from gateway.settings import GatewaySettings

    settings = GatewaySettings(database_url=database_url, keys_dir=keys_dir, issuer=issuer)
    asyncio.run(
        register_client(
            settings,
            client_id=CLIENT_ID,
            orgnr=ORGNR,
            agency_type=AGENCY_TYPE,
            scopes=list(SCOPES),
            jwks={"keys": [public_jwk]},
        )
    )


@dataclass
class BroenStack:
    gateway_url: str
    participant_url: str
    issuer: str
    keys_dir: Path
    client_key: OKPKey
    participant_id: str
    pids: dict[str, int]

    def access_token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": CLIENT_ID,
            "sub": CLIENT_ID,
            "aud": self.issuer,
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        assertion = jwt.encode(
            {"alg": "Ed25519", "kid": self.client_key.kid},
            claims,
            self.client_key,
            algorithms=["Ed25519"],
        )
        response = httpx.post(
            f"{self.gateway_url}/oauth/token",
            timeout=10.0,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
                "scope": " ".join(SCOPES),
            },
        )
        if response.status_code != 200:
            raise BenchError(f"POST /oauth/token answered {response.status_code}: {response.text}")
        return str(response.json()["access_token"])

    def gateway_headers(self) -> dict[str, str]:
        # Every read declares its purpose, is decided by the policy and audited.
        return {"Authorization": f"Bearer {self.access_token()}", "Broen-Purpose": "oppfolging"}

    def internal_headers(self) -> dict[str, str]:
        # A new signer each time: a fresh 60 s token, never one from a cache.
        signer = InternalTokenSigner("gateway", load_internal_signing_key(self.keys_dir, "gateway"))
        caller = CallerContext(
            kind="system", client_id=CLIENT_ID, orgnr=ORGNR, agency_type=AGENCY_TYPE, scopes=SCOPES
        )
        return {INTERNAL_HEADER: signer.token_for("participant", caller)}


@contextmanager
def broen_stack(backend: str, procs: Processes, workdir: Path) -> Iterator[BroenStack]:
    """Databases, keys, both processes, an organisation, a client and one participant."""
    keys_dir = workdir / "keys"
    init_keys_dir(keys_dir)
    created: list[str] = []
    try:
        urls: dict[str, str] = {}
        for component in ("participant", "consent", "gateway"):
            if backend == "sqlite":
                urls[component] = f"sqlite+aiosqlite:///{workdir / f'{component}.db'}"
            else:
                name = f"bench_broen_{component}_{secrets.token_hex(4)}"
                asyncio.run(postgres_admin(f'CREATE DATABASE "{name}"'))
                created.append(name)
                urls[component] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
            upgrade(MIGRATIONS[component], urls[component])
        asyncio.run(_add_organisation(urls["participant"]))

        participant_port, consent_port, gateway_port = free_port(), free_port(), free_port()
        consent_url = f"http://{LOOPBACK}:{consent_port}"
        participant_url = f"http://{LOOPBACK}:{participant_port}"
        gateway_url = issuer = f"http://{LOOPBACK}:{gateway_port}"
        client_key = OKPKey.generate_key("Ed25519", parameters={"kid": "bench-1"})
        _register_client(urls["gateway"], keys_dir, issuer, client_key.as_dict(private=False))

        broen = broen_executable()
        common = {"BROEN_KEYS_DIR": str(keys_dir)}
        participant = procs.start(
            "participant",
            [broen, "serve", "participant"],
            broen_env(
                {
                    **common,
                    "BROEN_PARTICIPANT_DATABASE_URL": urls["participant"],
                    "BROEN_PARTICIPANT_PORT": str(participant_port),
                    "BROEN_PARTICIPANT_LOG_LEVEL": "WARNING",
                }
            ),
            participant_port,
            workdir,
        )
        consent = procs.start(
            "consent",
            [broen, "serve", "consent"],
            broen_env(
                {
                    **common,
                    "BROEN_CONSENT_DATABASE_URL": urls["consent"],
                    "BROEN_CONSENT_PORT": str(consent_port),
                    "BROEN_CONSENT_LOG_LEVEL": "WARNING",
                }
            ),
            consent_port,
            workdir,
        )
        gateway = procs.start(
            "gateway",
            [broen, "serve", "gateway"],
            broen_env(
                {
                    **common,
                    "BROEN_GATEWAY_DATABASE_URL": urls["gateway"],
                    "BROEN_GATEWAY_PORT": str(gateway_port),
                    "BROEN_GATEWAY_PARTICIPANT_URL": participant_url,
                    "BROEN_GATEWAY_CONSENT_URL": consent_url,
                    "BROEN_GATEWAY_ISSUER": issuer,
                    "BROEN_GATEWAY_LOG_LEVEL": "WARNING",
                }
            ),
            gateway_port,
            workdir,
        )
        stack = BroenStack(
            gateway_url,
            participant_url,
            issuer,
            keys_dir,
            client_key,
            "",
            {"gateway": gateway.pid, "participant": participant.pid, "consent": consent.pid},
        )
        response = httpx.post(
            f"{gateway_url}/api/v1/participants",
            json=PARTICIPANT_BODY,
            headers=stack.gateway_headers(),
            timeout=10.0,
        )
        if response.status_code not in (200, 201):
            raise BenchError(
                f"POST /api/v1/participants answered {response.status_code}: {response.text}"
            )
        stack.participant_id = str(response.json()["id"])
        # A programme place: the organisation's relationship, without which it reads nothing.
        followed = httpx.post(
            f"{gateway_url}/api/v1/participants/{stack.participant_id}/programmes",
            json={"programme": "vgo", "starts_on": "2026-08-15"},
            headers=stack.gateway_headers(),
            timeout=10.0,
        )
        if followed.status_code != 201:
            raise BenchError(
                f"POST .../programmes answered {followed.status_code}: {followed.text}"
            )
        for name, url, headers in (
            (
                "gateway",
                f"{gateway_url}/api/v1/participants/{stack.participant_id}",
                stack.gateway_headers(),
            ),
            (
                "direct",
                f"{participant_url}/api/v1/participants/{stack.participant_id}",
                stack.internal_headers(),
            ),
        ):
            check = httpx.get(url, headers=headers, timeout=10.0)
            if check.status_code != 200 or "name" not in check.json():
                raise BenchError(f"{name} GET answered {check.status_code}: {check.text}")
        yield stack
    finally:
        procs.stop_all()
        for name in created:
            try:
                asyncio.run(postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:
                log(f"could not drop database {name}: {exc}")


def bench_broen(
    config: Config, backend: str, procs: Processes, workdir: Path, lua: Path, rows: list[Row]
) -> None:
    log(f"\n[{backend}] setting up (migrations, organisation, client, one participant)")
    with broen_stack(backend, procs, workdir) as stack:
        path = f"/api/v1/participants/{stack.participant_id}"
        with_pg = backend == "postgresql"
        rounds(
            config,
            backend,
            [
                ("direct", stack.participant_url + path, stack.internal_headers),
                ("gateway", stack.gateway_url + path, stack.gateway_headers),
            ],
            stack.pids,
            with_pg,
            lua,
            rows,
        )


# --- the naive baseline from ../shared/bench --------------------------------------------------


async def _naive_probe() -> int:
    import asyncpg

    connection = await asyncpg.connect(NAIVE_DSN, timeout=5)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM participants WHERE id = 42"))
    finally:
        await connection.close()


def naive_unavailable(config: Config) -> str | None:
    shared = config.shared_dir
    if not config.naive:
        return "BENCH_NAIVE=0"
    if not (shared / "proxy.py").exists() or not (shared / "dbread.py").exists():
        return f"{shared} does not hold proxy.py and dbread.py"
    if not (config.naive_venv / "bin" / "uvicorn").exists():
        return (
            f"its venv {config.naive_venv} is not set up (one-time setup in {shared / 'README.md'})"
        )
    if not postgres_answers():
        return "no PostgreSQL on 127.0.0.1:5432"
    try:
        rows = asyncio.run(asyncio.wait_for(_naive_probe(), timeout=20))
    except Exception as exc:
        return f"role bench / database benchdb / table participants not set up ({exc})"
    if rows != 1:
        return "table participants in benchdb has no row 42 (run its setup_bench.py)"
    return None


def bench_naive(
    config: Config, procs: Processes, workdir: Path, lua: Path, rows: list[Row]
) -> None:
    log("\n[naive] ../shared/bench proxy.py in front of dbread.py (PostgreSQL, GET /p/42)")
    uvicorn = str(config.naive_venv / "bin" / "uvicorn")
    dbread_port, proxy_port = free_port(), free_port()
    flags = [
        "--host",
        LOOPBACK,
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROEN_")}
    env["BENCH_DIR"] = str(config.shared_dir)
    try:
        dbread = procs.start(
            "naive-dbread",
            [uvicorn, "dbread:app", "--port", str(dbread_port), *flags],
            env,
            dbread_port,
            workdir,
            cwd=config.shared_dir,
            health_path="/p/42",
        )
        proxy = procs.start(
            "naive-proxy",
            [uvicorn, "proxy:app", "--port", str(proxy_port), *flags],
            {**env, "UPSTREAM": f"http://{LOOPBACK}:{dbread_port}"},
            proxy_port,
            workdir,
            cwd=config.shared_dir,
            health_path="/p/42",
        )
        pids = {"proxy": proxy.pid, "dbread": dbread.pid}
        rounds(
            config,
            "naive",
            [
                ("direct", f"http://{LOOPBACK}:{dbread_port}/p/42", dict),
                ("proxy", f"http://{LOOPBACK}:{proxy_port}/p/42", dict),
            ],
            pids,
            True,
            lua,
            rows,
        )
    finally:
        procs.stop_all()


# --- report -----------------------------------------------------------------------------------


def front_of(suite: str) -> str:
    return "proxy" if suite == "naive" else "gateway"


def ratios(rows: list[Row]) -> dict[tuple[str, int], list[float]]:
    """gateway/direct (naive: proxy/direct) req/s per (suite, connections), one per round."""
    by_key = {(r.suite, r.target, r.connections, r.round): r for r in rows}
    found: dict[tuple[str, int], list[float]] = {}
    for (suite, target, connections, round_no), row in by_key.items():
        if target != "direct" or not row.load.rps:
            continue
        front = by_key.get((suite, front_of(suite), connections, round_no))
        if front is not None:
            found.setdefault((suite, connections), []).append(front.load.rps / row.load.rps)
    return found


def summaries(rows: list[Row]) -> list[dict[str, Any]]:
    """Per (suite, target, connections): each figure's median and spread over the rounds."""
    groups: dict[tuple[str, str, int], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.suite, row.target, row.connections), []).append(row)
    found = []
    for (suite, target, connections), group in groups.items():
        processes = dict.fromkeys(k for r in group for k in r.cpu_ms)
        found.append(
            {
                "backend": suite,
                "target": target,
                "connections": connections,
                "rounds": len(group),
                "rps": spread([r.load.rps for r in group]),
                "p50_ms": spread([r.load.p50_ms for r in group]),
                "p99_ms": spread([r.load.p99_ms for r in group]),
                "errors": sum(r.load.errors for r in group),
                "busy_pct": spread([r.busy_pct for r in group]),
                "other_pct": spread([r.other_pct for r in group]),
                "cpu_ms": {k: spread([r.cpu_ms.get(k, 0.0) for r in group]) for k in processes},
            }
        )
    return found


def print_report(config: Config, rows: list[Row], notes: list[str]) -> None:
    print()
    print(
        f"load generator: {config.loadgen_note}; {config.duration:g} s measured per run, "
        f"{config.rounds} round(s), {config.warmup:g} s warm-up before the first (discarded); "
        f"{NCPU} CPU(s), load generator on the same cores"
    )
    print(
        "target: GET one participant. gateway = Authorization: Bearer through the gateway; "
        "direct = participant service with Broen-Internal-Token."
    )
    print("naive = ../shared/bench: proxy.py (httpx forwarder) in front of dbread.py (GET /p/42).")
    print(
        "CPU columns: ms of CPU per request from /proc/<pid>/stat (utime+stime). "
        "gw = gateway process (naive: proxy.py); svc = participant service (naive: dbread.py); "
        "cs = consent service (every gateway read asks it for the participant's grants); "
        "pg = all postgres processes on the machine (a backend that exits during a run is "
        "not counted); lg = load generator."
    )
    print(
        "On SQLite the database runs inside the service processes (its CPU is in gw/svc; pg '-')."
    )
    print()
    header = (
        f"{'backend':<10} {'target':<8} {'conns':>5} {'rnd':>3} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>8} {'errors':>6} {'busy%':>5} {'gw':>6} {'svc':>6} {'cs':>6} {'pg':>6} "
        f"{'lg':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        gw = row.cpu_ms.get("gateway", row.cpu_ms.get("proxy", 0.0))
        svc = row.cpu_ms.get("participant", row.cpu_ms.get("dbread", 0.0))
        pg = f"{row.cpu_ms['postgres']:6.2f}" if "postgres" in row.cpu_ms else f"{'-':>6}"
        cs = row.cpu_ms.get("consent", 0.0)
        print(
            f"{row.suite:<10} {row.target:<8} {row.connections:>5} {row.round:>3} "
            f"{row.load.rps:>8.0f} {row.load.p50_ms:>7.2f} {row.load.p99_ms:>8.2f} "
            f"{row.load.errors:>6} {row.busy_pct:>5.0f} {gw:>6.2f} "
            f"{svc:>6.2f} {cs:>6.2f} {pg} {row.cpu_ms.get('loadgen', 0.0):>6.2f}"
        )
    print()
    print(f"median (min–max) over {config.rounds} round(s):")
    for summary in summaries(rows):
        print(
            f"  {summary['backend']:<10} {summary['target']:<8} c={summary['connections']:<3} "
            f"req/s {spread_text([r.load.rps for r in rows if _same(r, summary)], 0)}  "
            f"p50 {spread_text([r.load.p50_ms for r in rows if _same(r, summary)])} ms  "
            f"p99 {spread_text([r.load.p99_ms for r in rows if _same(r, summary)])} ms"
        )
    print()
    print(
        f"ratios of req/s, each measured within one round (goal with policy and audit: "
        f"gateway/direct >= {GOAL_RATIO}); median (min–max):"
    )
    for (suite, connections), values in ratios(rows).items():
        flagged = any(r.notes for r in rows if r.suite == suite and r.connections == connections)
        print(
            f"  {suite:<10} {front_of(suite)}/direct c={connections:<3} {spread_text(values, 3)}"
            + ("  (with errors, see below)" if flagged else "")
        )
    for row in rows:
        for text in (*row.notes, *row.info):
            print(f"{row.suite} {row.target} c={row.connections} r{row.round}: {text}")
    for note in notes:
        print(note)


def _same(row: Row, summary: dict[str, Any]) -> bool:
    return (row.suite, row.target, row.connections) == (
        summary["backend"],
        summary["target"],
        summary["connections"],
    )


def record(results: Results, rows: list[Row], notes: list[str]) -> None:
    results.data["runs"] = [
        {
            "backend": r.suite,
            "target": r.target,
            "connections": r.connections,
            "round": r.round,
            **asdict(r.load),
            "rps": r.load.rps,
            "cpu_ms": r.cpu_ms,
            "busy_pct": r.busy_pct,
            "other_pct": r.other_pct,
            "notes": r.notes,
        }
        for r in rows
    ]
    results.data["summaries"] = summaries(rows)
    results.data["ratios"] = [
        {
            "backend": suite,
            "front": front_of(suite),
            "connections": connections,
            "values": values,
            "spread": spread(values),
            "goal": GOAL_RATIO if suite != "naive" else None,
        }
        for (suite, connections), values in ratios(rows).items()
    ]
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
    results = Results("run", config.settings())
    procs = Processes()
    rows: list[Row] = []
    notes: list[str] = []
    failed = False
    log(
        f"bench: backends {', '.join(config.backends)}; connections "
        f"{', '.join(map(str, config.connections))}; {config.rounds} round(s); load generator: "
        f"{config.loadgen_note}"
    )
    if "postgresql" not in config.backends and "BENCH_BACKENDS" not in os.environ:
        notes.append("PostgreSQL: skipped, nothing answers on 127.0.0.1:5432.")
    with tempfile.TemporaryDirectory(prefix="broen-bench-") as tmp:
        tmpdir = Path(tmp)
        lua = tmpdir / "report.lua"
        lua.write_text(WRK_LUA)
        try:
            for backend in config.backends:
                workdir = tmpdir / backend
                workdir.mkdir()
                try:
                    bench_broen(config, backend, procs, workdir, lua, rows)
                except BenchError as exc:
                    failed = True
                    notes.append(f"{backend}: FAILED: {exc}")
                    log(f"{backend}: FAILED: {exc}")
            reason = naive_unavailable(config)
            if reason:
                notes.append(
                    f"naive baseline (../shared/bench proxy.py + dbread.py): skipped, {reason}."
                )
            else:
                workdir = tmpdir / "naive"
                workdir.mkdir()
                try:
                    bench_naive(config, procs, workdir, lua, rows)
                except BenchError as exc:
                    notes.append(f"naive baseline: FAILED: {exc}")
                    log(f"naive baseline: FAILED: {exc}")
        except (KeyboardInterrupt, Interrupted):
            log("\ninterrupted: stopping the servers")
            procs.stop_all()
            notes.append("interrupted: the table is incomplete.")
            print_report(config, rows, notes)
            results.data["interrupted"] = True
            record(results, rows, notes)
            return 130
        finally:
            procs.stop_all()
    print_report(config, rows, notes)
    results.data["failed"] = failed
    record(results, rows, notes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
