"""What the bench scripts share: settings from the environment, the processes they start,
CPU accounting from /proc, percentiles and spreads, and the results file each one writes.

Each script prints its figures and also writes them as JSON to
BENCH_RESULTS_DIR/<name>.json (default var/bench/), from which bench/report.py builds
docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import platform
import pwd
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
START_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 10.0
BACKENDS = ("sqlite", "postgresql")


class BenchError(RuntimeError):
    """A set-up step failed; the message says which and why."""


class Interrupted(BaseException):
    """SIGTERM: unwind like Ctrl-C, so every started process is stopped."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted()


def catch_signals() -> None:
    """SIGTERM unwinds like Ctrl-C; Ctrl-C always stops the run cleanly, even when started
    from a shell that ignores SIGINT for background jobs."""
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)


# --- settings from the environment ------------------------------------------------------------


def env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        raise BenchError(f"{name} must be a number") from None


def env_int(name: str, default: int, low: int = 1) -> int:
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        raise BenchError(f"{name} must be a whole number") from None
    if value < low:
        raise BenchError(f"{name} must be at least {low}")
    return value


def env_numbers(name: str, default: str) -> tuple[float, ...]:
    """A list of non-negative numbers ("10,25 50"), in the order given."""
    try:
        values = tuple(
            float(v) for v in os.environ.get(name, default).replace(" ", ",").split(",") if v
        )
    except ValueError:
        raise BenchError(f"{name} must be numbers separated by commas") from None
    if any(v < 0 for v in values):
        raise BenchError(f"{name}: numbers must not be negative")
    return values


def env_choices(name: str, default: str, allowed: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(c.strip() for c in os.environ.get(name, default).split(",") if c.strip())
    for choice in chosen:
        if choice not in allowed:
            raise BenchError(f"{name}: unknown {choice!r} ({', '.join(allowed)})")
    return chosen


def backends_from_env() -> tuple[str, ...]:
    """BENCH_BACKENDS; by default SQLite, and PostgreSQL when one answers on 5432."""
    default = "sqlite,postgresql" if postgres_answers() else "sqlite"
    return env_choices("BENCH_BACKENDS", default, BACKENDS)


def rounds_from_env(default: int = 3) -> int:
    """BENCH_ROUNDS: how many times a measurement is repeated for its median and spread."""
    return env_int("BENCH_ROUNDS", default)


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_answers() -> bool:
    return answers(LOOPBACK, 5432)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


async def postgres_admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        await connection.execute(statement, timeout=30)
    finally:
        await connection.close()


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


def broen_executable() -> str:
    broen = ROOT / ".venv" / "bin" / "broen"
    return str(broen if broen.exists() else Path(sys.executable).parent / "broen")


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
    loadgen_s: float  # this process and its waited-for children (wrk), in seconds
    at: float  # time.monotonic()


def snapshot(processes: dict[str, int], with_postgres: bool) -> CpuSnapshot:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has been waited for
    return CpuSnapshot(
        per_process={name: proc_ticks(pid) for name, pid in processes.items()},
        postgres={p: proc_ticks(p) for p in postgres_pids()} if with_postgres else {},
        machine=machine_ticks(),
        loadgen_s=own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime,
        at=time.monotonic(),
    )


def cpu_seconds(before: CpuSnapshot, after: CpuSnapshot, with_pg: bool) -> dict[str, float]:
    """CPU seconds of each process between two snapshots; `postgres` is every postgres
    process (per PID: one started during the run counts from 0, one that exited during it
    is lost, never subtracted); `loadgen` is this script with its waited-for children."""
    cpu = {
        name: (after.per_process[name] - before.per_process.get(name, 0)) / CLK_TCK
        for name in after.per_process
    }
    if with_pg:
        ticks = sum(t - before.postgres.get(pid, 0) for pid, t in after.postgres.items() if t)
        cpu["postgres"] = ticks / CLK_TCK
    cpu["loadgen"] = after.loadgen_s - before.loadgen_s
    return cpu


def cpu_per(
    before: CpuSnapshot, after: CpuSnapshot, pids: dict[str, int], with_pg: bool, n: int
) -> dict[str, float]:
    """CPU ms per unit of work (n units) of each process between two snapshots."""
    n = max(n, 1)
    return {name: s * 1000 / n for name, s in cpu_seconds(before, after, with_pg).items()}


def busy_pct(before: CpuSnapshot, after: CpuSnapshot) -> float:
    """The share of the whole machine's CPU time in use (100 = every core busy)."""
    busy = after.machine[0] - before.machine[0]
    idle = after.machine[1] - before.machine[1]
    return 100.0 * busy / max(busy + idle, 1)


def other_pct(before: CpuSnapshot, after: CpuSnapshot, with_pg: bool) -> float:
    """The share of the machine's CPU time that none of the measured processes spent
    (someone else's work on the same cores)."""
    ours = sum(cpu_seconds(before, after, with_pg).values()) * CLK_TCK
    busy = after.machine[0] - before.machine[0]
    idle = after.machine[1] - before.machine[1]
    return 100.0 * max(busy - ours, 0) / max(busy + idle, 1)


# --- percentiles and spreads ------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """The p-quantile (nearest rank) of values in seconds, in ms; 0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """Median, min and max of one figure over its rounds (None when there are none)."""
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def spread_text(values: Sequence[float], digits: int = 2) -> str:
    found = spread(values)
    if found is None:
        return "-"
    if found["n"] == 1:
        return f"{found['median']:.{digits}f}"
    return f"{found['median']:.{digits}f} ({found['min']:.{digits}f}–{found['max']:.{digits}f})"


# --- results ----------------------------------------------------------------------------------


def results_dir() -> Path:
    return Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "var" / "bench")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Results:
    """One script's results file: its settings, its figures, when it ran and how long."""

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        self.name = name
        self.started_at = now_iso()
        self._started = time.monotonic()
        self.data: dict[str, Any] = {
            "bench": name,
            "started_at": self.started_at,
            "settings": settings,
            "python": platform.python_version(),
            "cpus": NCPU,
            "notes": [],
            "failed": False,
            "interrupted": False,
        }

    def write(self) -> Path:
        """Write (or rewrite, as figures come in) BENCH_RESULTS_DIR/<name>.json."""
        self.data["finished_at"] = now_iso()
        self.data["seconds"] = round(time.monotonic() - self._started, 1)
        directory = results_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        partial.replace(path)
        return path


class HasNotes(Protocol):
    notes: list[str]


R = TypeVar("R", bound=HasNotes)


def run_cases(
    prefix: str,
    cases: Sequence[tuple[str, Callable[[], R]]],
    run: Callable[[R, Processes, Path], None],
    finish: Callable[[list[R]], None],
    results_file: Results,
    notes: list[str],
) -> int:
    """Each case (a label and its result's maker) run by `run` in a working directory of its
    own, its failure noted on its result without stopping the rest; every started process
    stopped whatever happens; `finish` prints and records what was measured, also when the
    run was interrupted (said in `notes`). Exit code 0, 1 when a case failed, 130 when
    interrupted."""
    procs = Processes()
    results: list[R] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        try:
            for label, make_result in cases:
                workdir = Path(tmp) / re.sub(r"\W+", "-", label)
                workdir.mkdir()
                result = make_result()
                results.append(result)
                started = time.monotonic()
                try:
                    run(result, procs, workdir)
                except BenchError as exc:
                    failed = True
                    result.notes.append(f"{label}: FAILED: {exc}")
                    log(f"{label}: FAILED: {exc}")
                result.notes.append(
                    f"{label}: {time.monotonic() - started:.0f} s in all, set-up included."
                )
        except (KeyboardInterrupt, Interrupted):
            log("\ninterrupted: stopping the servers")
            procs.stop_all()
            notes.append("interrupted: the report is incomplete.")
            results_file.data["interrupted"] = True
            finish(results)
            return 130
        finally:
            procs.stop_all()
    results_file.data["failed"] = failed
    finish(results)
    return 1 if failed else 0
