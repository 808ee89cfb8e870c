"""Alembic, once for every service: each service's `migrations/env.py` calls
`run_env(metadata)`, and `upgrade(script_location, url)` migrates a database."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(script_location: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(script_location: Path, database_url: str, revision: str = "head") -> None:
    """Migrate to `revision`. Safe to call from inside a running event loop (tests, lifespan)."""
    config = alembic_config(script_location, database_url)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(config, revision)
        return
    failure: list[BaseException] = []

    def run() -> None:
        try:
            command.upgrade(config, revision)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's env.py: online migrations over the async engine."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None

    def run_sync(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def run_async() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(run_sync)
        if engine.dialect.name == "sqlite":
            # WAL is a property of the file: set once here, so the services' connections
            # never race to convert it (two first connections at once got "database is
            # locked" without waiting, as the change to WAL does not wait for a lock).
            async with engine.connect() as connection:
                await connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        await engine.dispose()

    asyncio.run(run_async())
