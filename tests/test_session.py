"""One transaction per request: a 2xx only after the commit succeeded."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import SessionDep, make_engine, make_sessionmaker, sqlite_writes
from shared.problems import install_problem_handlers

pytestmark = pytest.mark.anyio


def app_with(database_url: str) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.state.engine = make_engine(database_url)
    app.state.sessionmaker = make_sessionmaker(app.state.engine)

    @app.post("/organisations")
    async def write(session: SessionDep) -> dict[str, str]:
        await session.execute(
            text(
                "INSERT INTO organisations (orgnr, name, agency_type, created_at) "
                "VALUES ('310123455', 'S', 'skole', CURRENT_TIMESTAMP)"
            )
        )
        return {"status": "written"}

    @app.get("/organisations")
    async def read(session: SessionDep) -> dict[str, int]:
        total = await session.execute(text("SELECT count(*) FROM organisations"))
        return {"count": int(total.scalar_one())}

    return app


async def count(app: FastAPI) -> int:
    async with app.state.engine.connect() as connection:
        return int(
            (await connection.execute(text("SELECT count(*) FROM organisations"))).scalar_one()
        )


async def test_a_write_is_committed_before_the_2xx(database_url: Callable[[str], str]) -> None:
    app = app_with(database_url("participant"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.post("/organisations")

    assert response.status_code == 200
    assert await count(app) == 1
    await app.state.engine.dispose()


async def test_a_failed_commit_is_never_answered_with_a_2xx(
    database_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_with(database_url("participant"))

    async def failing_commit(self: AsyncSession) -> None:
        raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        response = await c.post("/organisations")
    monkeypatch.undo()

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert await count(app) == 0
    await app.state.engine.dispose()


async def test_a_savepoint_does_not_commit_the_first_write_of_a_request(
    database_url: Callable[[str], str],
) -> None:
    """pysqlite sends no BEGIN before a SAVEPOINT; releasing it committed the write, and the
    request's later failure could not take it back."""
    engine = make_engine(database_url("participant"))
    sessionmaker = make_sessionmaker(engine)
    insert = text(
        "INSERT INTO organisations (orgnr, name, agency_type, created_at) "
        "VALUES ('310123455', 'S', 'skole', CURRENT_TIMESTAMP)"
    )

    async with sessionmaker() as session:
        async with session.begin_nested():
            await session.execute(insert)
        await session.rollback()

    async with engine.connect() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM organisations"))).scalar()
    await engine.dispose()
    assert count == 0


async def test_a_read_request_leaves_its_caller_free_to_write(
    database_url: Callable[[str], str],
) -> None:
    """An in-process client runs the app in its own task: a GET marked that task read-only,
    and the caller's next transaction on SQLite began deferred and lost the write lock race
    ("database is locked")."""
    app = app_with(database_url("participant"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/organisations")

    assert response.status_code == 200
    assert sqlite_writes.get() is True
    await app.state.engine.dispose()
