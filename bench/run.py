"""`make bench`: read one participant through the gateway vs. directly from the service.

Starts the participant service and the gateway as real processes on loopback
(`broen serve ...`, production mode), sets up an organisation, an API client and one
participant, then measures `GET /api/v1/participants/{id}`:

  * through the gateway (`Authorization: Bearer <access token>`, `Broen-Purpose`): token
    check, the personvern decision and projection, and the decision appended to the audit
    log (committed before the answer; group commit), and
  * directly from the participant service (`Broen-Internal-Token`, signed here),

at 8 and 32 concurrent connections, with wrk when it is installed (otherwise with a
small asyncio + httpx load generator in this script). For each run it prints req/s,
p50/p99 latency and the CPU time per request of every process involved, taken from
/proc/<pid>/stat. Runs on SQLite, and on PostgreSQL when one answers on 127.0.0.1:5432.
When ../shared/bench is set up (see its README), its naive proxy (proxy.py in front of
dbread.py) is measured the same way, for comparison.

Environment: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, default 2),
BENCH_BACKENDS ("sqlite,postgresql"; default: both, PostgreSQL only when reachable),
BENCH_CONNECTIONS ("8,32"), BENCH_THREADS (wrk threads, 2), BENCH_LOADGEN (wrk|python),
BENCH_NAIVE (1; 0 skips the naive baseline), BENCH_SHARED_DIR (../shared/bench),
BENCH_NAIVE_VENV (/tmp/benchvenv).

Figures, not asserts: the goal in docs/PERFORMANCE.md (gateway/direct >= 0.5 with policy and
audit) is something to read off the table, never something this script enforces.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/ first, not the project root
    sys.path.insert(0, str(ROOT))

from joserfc import jwt  # noqa: E402
from joserfc.jwk import OKPKey  # noqa: E402

from shared.internal_auth import HEADER as INTERNAL_HEADER  # noqa: E402
from shared.internal_auth import CallerContext, InternalTokenSigner  # noqa: E402
from shared.keys import init_keys_dir, load_internal_signing_key  # noqa: E402
from shared.migrations import upgrade  # noqa: E402

LOOPBACK = "127.0.0.1"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ORGNR, AGENCY_TYPE = "310123455", "skole"  # synthetic organisation number (valid check digit)
CLIENT_ID = "bench-client"
SCOPES = ("participants:read", "participants:write")
PARTICIPANT_BODY = {"national_id": "15080551212", "name": "Bench Person", "source_system": "bench"}
MIGRATIONS = {
    "gateway": ROOT / "gateway" / "migrations",
    "participant": ROOT / "services" / "participant" / "migrations",
    "consent": ROOT / "services" / "consent" / "migrations",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
START_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 10.0
NAIVE_VENV = "/tmp/benchvenv"  # noqa: S108 - where ../shared/bench/README.md puts it
NAIVE_DSN = "postgresql://bench:bench@127.0.0.1:5432/benchdb"  # its documented role
WRK_TIMEOUT_S = 10  # a slower answer is a timeout (an error), not a latency sample
MAX_DURATION_S = 50.0  # an internal token lives 60 s; one is signed per wrk run
WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d sockerr=%d timeouts=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write, e.timeout))
end
"""


class BenchError(RuntimeError):
    """A set-up step failed; the message says which and why."""


class Interrupted(BaseException):
    """SIGTERM: unwind like Ctrl-C, so every started process is stopped."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- configuration ----------------------------------------------------------------------------


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        raise BenchError(f"{name} must be a number of seconds") from None


@dataclass(frozen=True)
class Config:
    duration: float
    warmup: float
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
        duration = _float_env("BENCH_DURATION", 10.0)
        if duration > MAX_DURATION_S:
            log(
                f"BENCH_DURATION={duration:g} capped at {MAX_DURATION_S:g} s "
                "(the directly used internal token lives 60 s)"
            )
            duration = MAX_DURATION_S
        duration = max(duration, 1.0)
        warmup = min(max(_float_env("BENCH_WARMUP", 2.0), 0.0), MAX_DURATION_S)
        connections = tuple(
            int(c)
            for c in os.environ.get("BENCH_CONNECTIONS", "8,32").replace(" ", ",").split(",")
            if c.strip()
        )
        threads = int(os.environ.get("BENCH_THREADS", "2"))
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
        default_backends = "sqlite,postgresql" if _postgres_answers() else "sqlite"
        backends = tuple(
            b.strip()
            for b in os.environ.get("BENCH_BACKENDS", default_backends).split(",")
            if b.strip()
        )
        for backend in backends:
            if backend not in ("sqlite", "postgresql"):
                raise BenchError(
                    f"BENCH_BACKENDS: unknown backend {backend!r} (sqlite, postgresql)"
                )
        return cls(
            duration=duration,
            warmup=warmup,
            connections=connections,
            threads=threads,
            backends=backends,
            loadgen=loadgen,
            loadgen_note=note,
            naive=os.environ.get("BENCH_NAIVE", "1") != "0",
            shared_dir=Path(os.environ.get("BENCH_SHARED_DIR", ROOT.parent / "shared" / "bench")),
            naive_venv=Path(os.environ.get("BENCH_NAIVE_VENV", NAIVE_VENV)),
        )


def _postgres_answers() -> bool:
    try:
        with socket.create_connection((LOOPBACK, 5432), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# --- processes --------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Processes:
    """Every process this script starts, stopped by PID (latest first) whatever happens."""

    def __init__(self) -> None:
        self.servers: list[Server] = []

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        port: int,
        logdir: Path,
        cwd: Path = ROOT,
        health_path: str = "/healthz",
    ) -> Server:
        log_path = logdir / f"{name}.log"
        handle = log_path.open("ab")
        try:
            process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            handle.close()
        server = Server(name, process, log_path, port)
        self.servers.append(server)
        self._wait_healthy(server, health_path)
        return server

    @staticmethod
    def _wait_healthy(server: Server, path: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = f"http://{LOOPBACK}:{server.port}{path}"
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise BenchError(
                    f"{server.name} exited with {server.process.returncode} while starting; "
                    f"log {server.log_path}:\n{server.log_tail()}"
                )
            with suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code < 500:
                    return
            time.sleep(0.1)
        raise BenchError(
            f"{server.name} did not answer {url} within {START_TIMEOUT_S:.0f} s; "
            f"log {server.log_path}:\n{server.log_tail()}"
        )

    def stop(self, server: Server) -> None:
        process = server.process
        if process.poll() is None:
            with suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log(
                    f"{server.name} (pid {process.pid}) ignored SIGTERM for "
                    f"{STOP_TIMEOUT_S:.0f} s; killing it"
                )
                with suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        for server in reversed(list(self.servers)):
            try:
                self.stop(server)
            except Exception as exc:  # keep stopping the others
                log(f"could not stop {server.name} (pid {server.pid}): {exc}")


def broen_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without any BROEN_* (so never dev mode), plus `extra`. The
    load comes from one client per organisation, far past a client's rate limit: the
    benchmarks measure the platform, not the limit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROEN_")}
    env["BROEN_GATEWAY_RATE_LIMIT"] = "100000000/minute"
    env.update(extra)
    return env


# --- CPU accounting ---------------------------------------------------------------------------


def proc_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (0 if it is gone)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = data[data.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def postgres_pids() -> list[int]:
    try:
        uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
    return pids


def machine_ticks() -> tuple[int, int]:
    """(busy, idle) ticks over all CPUs, from /proc/stat."""
    parts = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts[:8]) - idle, idle


@dataclass
class CpuSnapshot:
    per_process: dict[str, int]
    postgres: dict[int, int]  # pid -> ticks
    machine: tuple[int, int]
    loadgen_s: float


def snapshot(processes: dict[str, int], with_postgres: bool) -> CpuSnapshot:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has been waited for
    return CpuSnapshot(
        per_process={name: proc_ticks(pid) for name, pid in processes.items()},
        postgres={p: proc_ticks(p) for p in postgres_pids()} if with_postgres else {},
        machine=machine_ticks(),
        loadgen_s=own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
    )


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
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
        )

    return Load(
        len(latencies),
        elapsed,
        pct(0.50),
        pct(0.99),
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
    load: Load
    cpu_ms: dict[str, float]  # per request
    busy_pct: float
    notes: list[str] = field(default_factory=list)  # make the figures invalid
    info: list[str] = field(default_factory=list)


def measure(
    config: Config,
    suite: str,
    target: str,
    url: str,
    headers_for: Any,
    connections: int,
    processes: dict[str, int],
    with_postgres: bool,
    lua: Path,
) -> Row:
    """Warm-up (discarded), then one measured run; headers are made fresh for each run."""
    if config.warmup > 0:
        generate_load(config, url, headers_for(), connections, config.warmup, lua)
        time.sleep(0.5)
    headers = headers_for()
    before = snapshot(processes, with_postgres)
    load = generate_load(config, url, headers, connections, config.duration, lua)
    after = snapshot(processes, with_postgres)
    time.sleep(0.5)  # let in-flight work drain before the next run
    n = max(load.requests, 1)
    cpu_ms = {
        name: (after.per_process[name] - before.per_process[name]) * 1000 / CLK_TCK / n
        for name in processes
    }
    info = []
    if with_postgres:
        # Per PID: a backend started during the run counts from 0; one that exited during
        # the run is lost (its last ticks are not readable any more), never subtracted.
        ticks = sum(t - before.postgres.get(pid, 0) for pid, t in after.postgres.items() if t)
        cpu_ms["postgres"] = ticks * 1000 / CLK_TCK / n
        started = len(after.postgres.keys() - before.postgres.keys())
        ended = len(before.postgres.keys() - after.postgres.keys())
        if started or ended:
            info.append(f"postgres processes: {started} started, {ended} ended during the run")
    cpu_ms["loadgen"] = (after.loadgen_s - before.loadgen_s) * 1000 / n
    busy = after.machine[0] - before.machine[0]
    idle = after.machine[1] - before.machine[1]
    row = Row(
        suite, target, connections, load, cpu_ms, 100.0 * busy / max(busy + idle, 1), info=info
    )
    if load.errors:
        row.notes.append(
            f"{load.non2xx} non-2xx, {load.sockerr} socket errors, {load.timeouts} timeouts "
            f"(> {WRK_TIMEOUT_S} s) out of {load.requests} requests"
        )
    cpus = " ".join(f"{k}={v:.2f}" for k, v in cpu_ms.items())
    log(
        f"  {suite:<10} {target:<8} c={connections:<3} {load.rps:8.0f} req/s  "
        f"p50 {load.p50_ms:6.2f} ms  p99 {load.p99_ms:7.2f} ms  cpu ms/req: {cpus}"
        + (f"  !! {'; '.join(row.notes)}" if row.notes else "")
        + (f"  ({'; '.join(row.info)})" if row.info else "")
    )
    return row


# --- Broen set-up -----------------------------------------------------------------------------


async def _postgres_admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        await connection.execute(statement, timeout=30)
    finally:
        await connection.close()


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
                asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
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

        broen = str(ROOT / ".venv" / "bin" / "broen")
        if not Path(broen).exists():
            broen = str(Path(sys.executable).parent / "broen")
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
                asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            except Exception as exc:
                log(f"could not drop database {name}: {exc}")


def bench_broen(
    config: Config, backend: str, procs: Processes, workdir: Path, lua: Path, rows: list[Row]
) -> None:
    log(f"\n[{backend}] setting up (migrations, organisation, client, one participant)")
    with broen_stack(backend, procs, workdir) as stack:
        path = f"/api/v1/participants/{stack.participant_id}"
        with_pg = backend == "postgresql"
        for connections in config.connections:
            rows.append(
                measure(
                    config,
                    backend,
                    "direct",
                    stack.participant_url + path,
                    stack.internal_headers,
                    connections,
                    stack.pids,
                    with_pg,
                    lua,
                )
            )
            rows.append(
                measure(
                    config,
                    backend,
                    "gateway",
                    stack.gateway_url + path,
                    stack.gateway_headers,
                    connections,
                    stack.pids,
                    with_pg,
                    lua,
                )
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
    if not _postgres_answers():
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
        for connections in config.connections:
            rows.append(
                measure(
                    config,
                    "naive",
                    "direct",
                    f"http://{LOOPBACK}:{dbread_port}/p/42",
                    dict,
                    connections,
                    pids,
                    True,
                    lua,
                )
            )
            rows.append(
                measure(
                    config,
                    "naive",
                    "proxy",
                    f"http://{LOOPBACK}:{proxy_port}/p/42",
                    dict,
                    connections,
                    pids,
                    True,
                    lua,
                )
            )
    finally:
        procs.stop_all()


# --- report -----------------------------------------------------------------------------------


def print_report(config: Config, rows: list[Row], notes: list[str]) -> None:
    print()
    print(
        f"load generator: {config.loadgen_note}; {config.duration:g} s measured after "
        f"{config.warmup:g} s warm-up (discarded); {NCPU} CPU(s), load generator on the same cores"
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
        f"{'backend':<10} {'target':<8} {'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>8} "
        f"{'errors':>6} {'busy%':>5} {'gw':>6} {'svc':>6} {'cs':>6} {'pg':>6} {'lg':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        gw = row.cpu_ms.get("gateway", row.cpu_ms.get("proxy", 0.0))
        svc = row.cpu_ms.get("participant", row.cpu_ms.get("dbread", 0.0))
        pg = f"{row.cpu_ms['postgres']:6.2f}" if "postgres" in row.cpu_ms else f"{'-':>6}"
        cs = row.cpu_ms.get("consent", 0.0)
        print(
            f"{row.suite:<10} {row.target:<8} {row.connections:>5} {row.load.rps:>8.0f} "
            f"{row.load.p50_ms:>7.2f} {row.load.p99_ms:>8.2f} "
            f"{row.load.errors:>6} {row.busy_pct:>5.0f} {gw:>6.2f} "
            f"{svc:>6.2f} {cs:>6.2f} {pg} {row.cpu_ms.get('loadgen', 0.0):>6.2f}"
        )
    print()
    print("ratios of req/s in the same run (goal with policy and audit: gateway/direct >= 0.5):")
    by_key = {(r.suite, r.target, r.connections): r for r in rows}
    ratios: dict[str, list[float]] = {}
    for suite in dict.fromkeys(r.suite for r in rows):
        front = "proxy" if suite == "naive" else "gateway"
        for connections in config.connections:
            a, b = (
                by_key.get((suite, front, connections)),
                by_key.get((suite, "direct", connections)),
            )
            if a and b and b.load.rps:
                ratio = a.load.rps / b.load.rps
                ratios.setdefault(suite, []).append(ratio)
                flag = "" if not (a.notes or b.notes) else "  (with errors, see below)"
                print(f"  {suite:<10} {front}/direct c={connections:<3} {ratio:6.3f}{flag}")
    if ratios:
        print(
            f"  side by side (c={' / c='.join(map(str, config.connections))}): "
            + "   ".join(
                f"{suite} {' / '.join(f'{v:.2f}' for v in vals)}" for suite, vals in ratios.items()
            )
        )
    for row in rows:
        for text in (*row.notes, *row.info):
            print(f"{row.suite} {row.target} c={row.connections}: {text}")
    for note in notes:
        print(note)


# --- main -------------------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted()


def main() -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C always stops the run cleanly, even when started from a shell that ignores SIGINT
    # for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        config = Config.from_env()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    procs = Processes()
    rows: list[Row] = []
    notes: list[str] = []
    failed = False
    log(
        f"bench: backends {', '.join(config.backends)}; connections "
        f"{', '.join(map(str, config.connections))}; load generator: {config.loadgen_note}"
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
            print_report(config, rows, [*notes, "interrupted: the table is incomplete."])
            return 130
        finally:
            procs.stop_all()
    print_report(config, rows, notes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
