"""The gateway's body limits: a body too large is a 413 problem, a body too slow a 408
problem, both before the route sees a partial body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from shared.app import BodyLimits
from shared.problems import install_problem_handlers

pytestmark = pytest.mark.anyio


def app_with(*, max_bytes: int, timeout_seconds: float) -> tuple[FastAPI, list[int]]:
    app = FastAPI()
    install_problem_handlers(app)
    received: list[int] = []

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        received.append(len(body))
        return {"bytes": len(body)}

    app.add_middleware(BodyLimits, max_bytes=max_bytes, timeout_seconds=timeout_seconds)
    return app, received


async def post(app: FastAPI, content: bytes | AsyncIterator[bytes]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post("/echo", content=content)


async def test_a_body_that_stalls_past_the_timeout_is_a_408_problem() -> None:
    app, received = app_with(max_bytes=1024, timeout_seconds=0.2)

    async def stalling() -> AsyncIterator[bytes]:
        yield b"{"
        await asyncio.sleep(1.0)
        yield b"}"

    response = await post(app, stalling())

    assert response.status_code == 408
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/body-timeout")
    assert received == []


async def test_a_body_in_time_and_within_the_limit_reaches_the_route() -> None:
    app, received = app_with(max_bytes=1024, timeout_seconds=2.0)

    async def prompt() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 100
            await asyncio.sleep(0.01)

    response = await post(app, prompt())

    assert response.status_code == 200 and response.json() == {"bytes": 400}
    assert received == [400]


async def test_a_streamed_body_over_the_limit_is_a_413_problem() -> None:
    app, received = app_with(max_bytes=1024, timeout_seconds=2.0)

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 512

    response = await post(app, endless())

    assert response.status_code == 413
    assert response.json()["type"].endswith("/body-too-large")
    assert received == []
