"""A database that cannot be reached now (down, restarting, recovering from a crash, out of
connections) is a 503 problem a client may retry, never a 500; any other database error
stays a 500. tests/system/test_faults_postgres.py restarts a real PostgreSQL under load;
these are the same errors as asyncpg raises them through SQLAlchemy, without a server."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.problems import PROBLEM_BASE, PROBLEM_MEDIA_TYPE, install_problem_handlers

pytestmark = pytest.mark.anyio


class DriverError(Exception):
    """What SQLAlchemy's asyncpg adapter wraps: the server's SQLSTATE kept as `sqlstate`."""

    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("server said something that may quote a parameter: 01019012345")
        self.sqlstate = sqlstate


def failing_app(error: Exception) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/work")
    async def work() -> None:
        raise error

    return app


async def answer(error: Exception) -> httpx.Response:
    transport = httpx.ASGITransport(app=failing_app(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/work")


def wrapped(sqlstate: str | None, *, invalidated: bool = False) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, DriverError(sqlstate), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(wrapped("57P03"), id="cannot-connect-now-starting-or-recovering"),
        pytest.param(wrapped("57P01"), id="admin-shutdown"),
        pytest.param(wrapped("57P02"), id="crash-shutdown"),
        pytest.param(wrapped("08006"), id="connection-failure"),
        pytest.param(wrapped("53300"), id="too-many-connections"),
        pytest.param(wrapped(None, invalidated=True), id="connection-lost"),
        pytest.param(ConnectionRefusedError(111, "Connection refused"), id="refused"),
        pytest.param(TimeoutError(), id="connect-timeout"),
        pytest.param(PoolTimeout("pool exhausted"), id="pool-timeout"),
    ],
)
async def test_an_unreachable_database_is_a_503_problem_to_retry(error: Exception) -> None:
    response = await answer(error)

    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert response.headers["retry-after"] == "1"
    problem = response.json()
    assert problem["type"] == PROBLEM_BASE + "database-unavailable"
    assert problem["status"] == 503
    assert "01019012345" not in response.text and "SELECT" not in response.text


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(wrapped("22P02"), id="invalid-text-representation"),
        pytest.param(IntegrityError("INSERT", {}, DriverError("23505")), id="unique-violation"),
    ],
)
async def test_any_other_database_error_is_still_a_500(error: Exception) -> None:
    response = await answer(error)

    assert response.status_code == 500
    assert response.json()["type"] == PROBLEM_BASE + "internal-error"
    assert "01019012345" not in response.text


async def test_the_gateway_passes_a_services_database_refusal_on_with_its_type() -> None:
    """A client of the gateway learns that a database is down, and when to try again,
    rather than a bare "service unavailable"; a service's 500 stays the gateway's own 503."""
    from joserfc.jwk import OKPKey

    from shared.clients import Upstream
    from shared.internal_auth import CallerContext, InternalTokenSigner

    async def through_gateway(error: Exception) -> httpx.Response:
        service = httpx.ASGITransport(app=failing_app(error), raise_app_exceptions=False)
        signer = InternalTokenSigner("gateway", OKPKey.generate_key("Ed25519", {"kid": "k"}))
        upstream = Upstream(
            "participant",
            "http://participant.internal",
            signer,
            timeout_seconds=1,
            connect_timeout_seconds=1,
            transport=service,
        )
        gateway = FastAPI()
        install_problem_handlers(gateway)

        @gateway.get("/read")
        async def read() -> None:
            await upstream.call("GET", "/work", CallerContext(kind="system", orgnr="310123455"))

        transport = httpx.ASGITransport(app=gateway, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            try:
                return await client.get("/read")
            finally:
                await upstream.aclose()

    refused = await through_gateway(wrapped("57P03"))
    failed = await through_gateway(wrapped("22P02"))

    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert refused.json()["type"] == PROBLEM_BASE + "database-unavailable"
    assert failed.status_code == 503
    assert failed.json()["type"] == PROBLEM_BASE + "service-unavailable"
