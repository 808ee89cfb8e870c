"""Async engine and the per-request session: commit on success, roll back on error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import DateTime, Dialect, MetaData, TypeDecorator, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def make_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


# Whether the current unit of work may write; SQLite begins it accordingly. Requests with a
# safe method (GET, HEAD, OPTIONS) only read; everything else (and the CLI) may write.
sqlite_writes: ContextVar[bool] = ContextVar("sqlite_writes", default=True)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@contextmanager
def sqlite_writing(writes: bool) -> Iterator[None]:
    """Set whether the unit of work may write, and put back what was there after it: a
    caller that runs the app in its own task (an in-process client) keeps its own value."""
    previous = sqlite_writes.get()
    sqlite_writes.set(writes)
    try:
        yield
    finally:
        sqlite_writes.set(previous)


# A request waits at most this long for a pooled connection, then gets a 503 problem.
POOL_TIMEOUT_SECONDS = 5.0
# Opening a connection to PostgreSQL gives up after this long (asyncpg's own default is
# 60 s): a server that does not answer is a 503 soon, not a request hanging for a minute.
CONNECT_TIMEOUT_SECONDS = 5.0


def make_engine(database_url: str, **overrides: Any) -> AsyncEngine:
    """One engine per process. SQLite gets WAL and a busy timeout so readers don't block writers."""
    if database_url.startswith("sqlite"):
        engine = create_async_engine(database_url, connect_args={"timeout": 15}, **overrides)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            # pysqlite begins a transaction only before DML, never before a SAVEPOINT, so a
            # request whose first write was in a savepoint had it committed on release.
            # SQLAlchemy's recipe: the driver stays out of it and we say BEGIN ourselves.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            # A transaction that will write takes the write lock at once: a deferred one that
            # read first could not upgrade while another writer committed (SQLITE_BUSY).
            connection.exec_driver_sql("BEGIN IMMEDIATE" if sqlite_writes.get() else "BEGIN")

        return engine
    # A fixed pool: overflow connections are closed on return, and under steady load that
    # meant a PostgreSQL backend forked and authenticated for many requests. A request
    # that waits longer than pool_timeout for a connection gets a 503 problem.
    # pool_pre_ping: a pooled connection that died with the server (a restart, a crash, a
    # failover) is found at checkout and replaced, so no request gets one after it is back.
    options: dict[str, Any] = {
        "pool_size": 20,
        "max_overflow": 0,
        "pool_timeout": POOL_TIMEOUT_SECONDS,
        "pool_pre_ping": True,
    }
    if database_url.startswith("postgresql+asyncpg"):
        options["connect_args"] = {"timeout": CONNECT_TIMEOUT_SECONDS}
    options.update(overrides)
    return create_async_engine(database_url, **options)


# SQLSTATEs that say the server cannot serve us now, not that the statement was wrong:
# class 08 (connection exception), 57P01 and 57P02 (sessions ended by a shutdown or a
# crash), 57P03 (cannot connect now: starting, shutting down, recovering), 53300 (too
# many connections).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached now (down, restarting,
    recovering from a crash, out of connections, the pool exhausted, the connection lost),
    so the request may succeed if tried again: a 503, not a fault of the code."""
    if isinstance(error, OperationalError | InterfaceError | PoolTimeout):
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        # asyncpg's errors reach us wrapped by SQLAlchemy's adapter, which keeps the SQLSTATE.
        sqlstate = getattr(error.orig, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    # Opening a connection fails with the socket's own errors (not wrapped by SQLAlchemy).
    return isinstance(error, ConnectionError | TimeoutError)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request. A response is only sent after the commit succeeded."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    with sqlite_writing(request.method not in SAFE_METHODS):
        async with sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise


# scope="function": the commit runs before the response is sent, so a 2xx means committed
# (with the default scope FastAPI sends the response first and commits after).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for a POST that only reads (a query too large for a URL): on SQLite it
    does not take the write lock, so it never waits for writers or holds them up."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    with sqlite_writing(False):
        async with sessionmaker() as session:
            yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; store UTC-aware timestamps only")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
