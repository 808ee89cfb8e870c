"""Real processes for the fault tests: a throwaway PostgreSQL cluster the test owns, and
the four components (`broen serve ...`, production mode) on loopback against databases
in it, set up the way bench/messaging.py sets up its own (keys, migrations, the
directory's veileder and kontaktlærer, a client per organisation).

The cluster is never the machine's shared server: `initdb` into a directory of its own, a
free port on 127.0.0.1, its unix socket in that directory, trust authentication, and
stopped (or killed) and removed whatever happens. PostgreSQL refuses to run as root, so
as root every cluster command runs as the `postgres` OS user."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import asyncpg

from bench.common import (
    LOOPBACK,
    free_port,
)
from bench.messaging import (
    ALL_MIGRATIONS,
    COMPONENTS,
)
from shared.migrations import upgrade

PG_START_TIMEOUT_S = 60
PG_STOP_TIMEOUT_S = 30


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian's layout), if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


class Cluster:
    """A PostgreSQL cluster in `directory`, listening on 127.0.0.1:`port` only."""

    def __init__(self, bin_dir: Path, directory: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = port
        # initdb refuses root: as root, the cluster belongs to the postgres OS user.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://postgres@{LOOPBACK}:{self.port}/{database}"

    def _run(self, tool: str, *args: str, timeout: float) -> None:
        argv = [*self.as_user, str(self.bin_dir / tool), *args]
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            argv,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} {args[0] if args else ''} failed ({done.returncode}): "
                f"{done.stderr.strip()[-2000:]}\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        with suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no server log)"

    def init(self) -> None:
        # --no-sync: only initdb's own files skip fsync (a crash of the server process
        # never loses what the kernel holds); the server itself keeps fsync on.
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
            timeout=PG_START_TIMEOUT_S,
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# A throwaway cluster of tests/system/real_stack.py\n"
                f"listen_addresses = '{LOOPBACK}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.directory}'\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
                "full_page_writes = on\n"
                "max_connections = 100\n"
                "shared_buffers = 32MB\n"
                # Before crash recovery the server flushes the data directory: one syncfs
                # call, not an fsync of each of its thousands of files (10 s and more on a
                # busy disk).
                "recovery_init_sync_method = syncfs\n"
            )

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            str(PG_START_TIMEOUT_S),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            timeout=PG_START_TIMEOUT_S + 10,
        )

    def stop(self, mode: str) -> None:
        """`pg_ctl stop -m fast` (sessions ended cleanly) or `-m immediate` (a crash: no
        shutdown checkpoint, recovery from the WAL at the next start)."""
        self._run(
            "pg_ctl",
            "stop",
            "-w",
            "-t",
            str(PG_STOP_TIMEOUT_S),
            "-m",
            mode,
            "-D",
            str(self.data),
            timeout=PG_STOP_TIMEOUT_S + 10,
        )

    def postmaster_pid(self) -> int | None:
        with suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        return None

    def destroy(self) -> None:
        """Stop at once if running; kill the postmaster if pg_ctl could not."""
        if self.postmaster_pid() is None:
            return
        try:
            self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            pid = self.postmaster_pid()
            if pid is not None:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    async def execute(self, statement: str, database: str = "postgres") -> None:
        connection = await asyncpg.connect(self.url(database, "postgresql"), timeout=10)
        try:
            await connection.execute(statement, timeout=30)
        finally:
            await connection.close()


@contextmanager
def stopped_on_sigterm() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C while inside, so a test run that is ended (a timeout, CI
    cancelling it) still stops the processes and the cluster it started."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def throwaway_cluster(log_copy: Path | None = None) -> Iterator[Cluster]:
    """A new cluster, started; stopped and removed afterwards whatever happens.

    Its directory is made under the system's temporary directory, not pytest's tmp_path:
    pytest keeps that private to the user running the tests, and the postgres OS user (the
    cluster's owner when the tests run as root) could not reach it."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL installed under /usr/lib/postgresql/*/bin")
    directory = Path(tempfile.mkdtemp(prefix="broen-pg-"))
    cluster = Cluster(bin_dir, directory, free_port())
    try:
        if cluster.as_user:
            owner = pwd.getpwnam("postgres")
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.destroy()
        finally:
            if log_copy is not None and cluster.log.exists():
                shutil.copyfile(cluster.log, log_copy)
            shutil.rmtree(directory, ignore_errors=True)


def create_databases(cluster: Cluster) -> dict[str, str]:
    """A migrated database per component; their SQLAlchemy URLs."""
    urls: dict[str, str] = {}
    for component in COMPONENTS:
        asyncio.run(cluster.execute(f'CREATE DATABASE "broen_{component}"'))
        urls[component] = cluster.url(f"broen_{component}")
        upgrade(ALL_MIGRATIONS[component], urls[component])
    return urls
