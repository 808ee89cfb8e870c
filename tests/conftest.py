"""Test databases: every database test runs on SQLite, and again on PostgreSQL when
one is reachable (`BROEN_TEST_POSTGRES_URL`, or a server on 127.0.0.1:5432).
With CI=true PostgreSQL is required: an unreachable server fails the run. The same holds
for NATS (`nats_url`), which the event tests use, and Redis (`redis_url`), which the rate
limits are counted in."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from shared.keys import init_keys_dir
from shared.migrations import upgrade

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = {
    "gateway": ROOT / "gateway" / "migrations",
    "participant": ROOT / "services" / "participant" / "migrations",
    "consent": ROOT / "services" / "consent" / "migrations",
    "messaging": ROOT / "services" / "messaging" / "migrations",
}
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _postgres_url() -> str | None:
    explicit = os.environ.get("BROEN_TEST_POSTGRES_URL")
    if explicit:
        return explicit
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return DEFAULT_POSTGRES_URL
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI=true requires PostgreSQL on 127.0.0.1:5432 (or BROEN_TEST_POSTGRES_URL)"
            )
        return None


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    init_keys_dir(directory)
    return directory


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql" and _postgres_url() is None:
        pytest.skip("no PostgreSQL reachable (set BROEN_TEST_POSTGRES_URL or start one)")
    return str(request.param)


class _Templates:
    """Migrated once per session; each test gets a fresh copy (SQLite) or emptied tables
    (PostgreSQL)."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.templates: dict[str, str] = {}
        self.run_id = uuid.uuid4().hex[:8]

    def template(self, component: str) -> str:
        if component not in self.templates:
            if self.backend == "sqlite":
                path = self.workdir / f"template-{component}.db"
                url = f"sqlite+aiosqlite:///{path}"
            else:
                url = self._create_pg_database(component)
            upgrade(MIGRATIONS[component], url)
            self.templates[component] = url
        return self.templates[component]

    def _create_pg_database(self, component: str) -> str:
        base = _postgres_url()
        assert base is not None
        name = f"broen_test_{component}_{self.run_id}"
        _blocking(_admin(base, f'CREATE DATABASE "{name}"'))
        return base.rsplit("/", 1)[0] + "/" + name

    def fresh(self, component: str, test_dir: Path) -> str:
        url = self.template(component)
        if self.backend == "sqlite":
            source = Path(url.removeprefix("sqlite+aiosqlite:///"))
            target = test_dir / f"{component}.db"
            shutil.copyfile(source, target)
            return f"sqlite+aiosqlite:///{target}"
        _blocking(_truncate_all(url))
        return url

    def drop_all(self) -> None:
        if self.backend != "postgresql":
            return
        base = _postgres_url()
        assert base is not None
        for url in self.templates.values():
            name = url.rsplit("/", 1)[1]
            _blocking(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _blocking(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run database set-up on its own loop in a thread: callers may be inside an event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coroutine).result()


async def _admin(base_url: str, statement: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(base_url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text(statement))
    await engine.dispose()


async def _truncate_all(url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    async with engine.begin() as connection:
        rows = await connection.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        )
        tables = [f'"{row[0]}"' for row in rows]
        if tables:
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture(scope="session")
def _templates(db_backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Templates]:
    templates = _Templates(db_backend, tmp_path_factory.mktemp(f"db-{db_backend}"))
    yield templates
    templates.drop_all()


@pytest.fixture
def database_url(_templates: _Templates, tmp_path: Path) -> Callable[[str], str]:
    """`database_url("participant")`: a freshly migrated, empty database for this test."""
    return lambda component: _templates.fresh(component, tmp_path)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
def nats_url() -> str:
    """A real NATS server with JetStream (`BROEN_TEST_NATS_URL`, or one on 127.0.0.1:4222);
    with CI=true an unreachable one fails the run, otherwise its tests are skipped."""
    explicit = os.environ.get("BROEN_TEST_NATS_URL")
    if explicit:
        return explicit
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=1):
            return DEFAULT_NATS_URL
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true requires NATS with JetStream on 127.0.0.1:4222")
        pytest.skip("no NATS server reachable (set BROEN_TEST_NATS_URL or start one)")


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"


@pytest.fixture
def redis_url() -> str:
    """A real Redis (`BROEN_TEST_REDIS_URL`, or one on 127.0.0.1:6379); with CI=true an
    unreachable one fails the run, otherwise its tests are skipped."""
    explicit = os.environ.get("BROEN_TEST_REDIS_URL")
    if explicit:
        return explicit
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return DEFAULT_REDIS_URL
    except OSError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true requires Redis on 127.0.0.1:6379")
        pytest.skip("no Redis reachable (set BROEN_TEST_REDIS_URL or start one)")
