"""The whole stack as real processes on loopback, for fault tests: the four components
started by the benchmarks' `four_components` (production mode, one database per
component, SQLite files or PostgreSQL databases dropped afterwards), a NATS server of the
test's own, and what a test needs to stop, kill and start them again.

Each fault test reports its figures with `report`: one line on stdout and an entry in
var/reliability/faults.json, for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.common import ROOT, Processes, Server, free_port
from bench.messaging import SCOPES, Org, four_components, new_org
from services.participant.schemas import StaffRead

NAV, SKOLE = "889640782", "310123455"
STACK_SCOPES = (*SCOPES, "events:write")
NATS_SERVER = "/usr/sbin/nats-server"
RESULTS = ROOT / "var" / "reliability" / "faults.json"


@dataclass
class Started:
    argv: list[str]
    env: dict[str, str]
    port: int
    logdir: Path
    health_path: str


class Restartable(Processes):
    """`Processes` that remembers how each was started, so a test can kill one (by its
    PID) and start it again the same way."""

    def __init__(self) -> None:
        super().__init__()
        self.how: dict[str, Started] = {}
        self._starting: list[tuple[Server, str]] | None = None

    @contextmanager
    def in_parallel(self) -> Iterator[Callable[[], None]]:
        """Starts within do not wait for health checks; call the function given to wait
        for all of them (two cores start four Python processes faster side by side)."""
        self._starting = []

        def wait() -> None:
            starting, self._starting = self._starting or [], None
            for server, path in starting:
                Processes._wait_healthy(server, path)

        try:
            yield wait
        finally:
            self._starting = None

    def _wait_healthy(self, server: Server, path: str) -> None:  # type: ignore[override]
        if self._starting is not None:
            self._starting.append((server, path))
        else:
            Processes._wait_healthy(server, path)

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
        self.how[name] = Started(argv, env, port, logdir, health_path)
        return super().start(name, argv, env, port, logdir, cwd, health_path)

    def server(self, name: str) -> Server:
        return next(s for s in self.servers if s.name == name)

    def stall(self, name: str) -> None:
        """SIGSTOP: the process holds its sockets and answers nothing (`kill` ends it)."""
        self.server(name).process.send_signal(signal.SIGSTOP)

    def resume_all(self) -> None:
        """SIGCONT to every process (one left stalled by a failed test)."""
        for server in self.servers:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGCONT)

    def stop_all(self) -> None:
        self.resume_all()  # a stalled process would not act on SIGTERM
        super().stop_all()

    def kill(self, name: str) -> None:
        """SIGKILL, and forgotten (`start_again` starts it the same way)."""
        server = self.server(name)
        server.process.kill()
        server.process.wait(timeout=10)
        self.servers.remove(server)

    def start_again(self, name: str) -> Server:
        how = self.how[name]
        return self.start(name, how.argv, how.env, how.port, how.logdir, ROOT, how.health_path)

    def running(self, name: str) -> bool:
        return any(s.name == name and s.process.poll() is None for s in self.servers)

    def database_url(self, component: str) -> str:
        return self.how[component].env[f"BROEN_{component.upper()}_DATABASE_URL"]


def nats_server_binary() -> str | None:
    """nats-server on PATH or where Debian puts it; with CI=true a missing one fails."""
    found = shutil.which("nats-server") or (NATS_SERVER if Path(NATS_SERVER).exists() else None)
    if found is None and os.environ.get("CI") == "true":
        pytest.fail("CI=true requires nats-server (for the NATS fault test)")
    return found


def start_nats(procs: Restartable, workdir: Path, binary: str) -> str:
    """A NATS server with JetStream on free ports of its own, storing under `workdir`
    (never the machine's shared server); its URL."""
    port, monitor = free_port(), free_port()
    store = workdir / "nats"
    store.mkdir(exist_ok=True)
    argv = [binary, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor), "-js"]
    argv += ["-sd", str(store)]
    procs.start("nats", argv, {"PATH": os.environ.get("PATH", "")}, monitor, workdir)
    return f"nats://127.0.0.1:{port}"


@dataclass
class Stack:
    """The running stack: base URLs, the organisations (each with an API client), the
    directory's veileder (NAV) and kontaktlærer (the school), and the processes."""

    backend: str
    base: dict[str, str]
    nav: Org
    skole: Org
    veileder: StaffRead
    teacher: StaffRead
    procs: Restartable
    nats_url: str | None
    settings: dict[str, str]

    @property
    def gateway(self) -> str:
        return self.base["gateway"]


@contextmanager
def running_stack(
    backend: str, workdir: Path, *, nats_binary: str | None, env: dict[str, str]
) -> Iterator[Stack]:
    """The four components (`env` goes to each), with NATS between them when a
    nats-server binary is given; every process stopped afterwards, whatever happened."""
    procs = Restartable()
    try:
        settings = dict(env)
        nats_url = None
        if nats_binary is not None:
            nats_url = start_nats(procs, workdir, nats_binary)
            settings |= {"BROEN_NATS_URL": nats_url, "BROEN_NATS_STREAM": "BROEN_FAULTS"}
        nav = new_org(NAV, "nav", "faults-nav", "nav-1")
        skole = new_org(SKOLE, "skole", "faults-skole", "vgs-1")
        with (
            procs.in_parallel() as all_started,
            four_components(
                backend, procs, workdir, orgs=(nav, skole), scopes=STACK_SCOPES, env=settings
            ) as components,
        ):
            all_started()
            yield Stack(
                backend,
                components.base,
                nav,
                skole,
                components.veileder,
                components.teacher,
                procs,
                nats_url,
                settings,
            )
    finally:
        procs.stop_all()


def report(scenario: str, figures: dict[str, Any]) -> None:
    """One line on stdout and the scenario's entry in var/reliability/faults.json (entries
    of other scenarios are kept)."""
    print(f"\n[faults] {scenario}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        results = {}
    results[scenario] = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **figures}
    partial = RESULTS.with_suffix(".json.partial")
    partial.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    partial.replace(RESULTS)
