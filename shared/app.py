"""What every component's FastAPI app has: problem handlers, health, request ids, logs."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from sqlalchemy import text

from shared.problems import ServiceUnavailable, install_problem_handlers

log = logging.getLogger("broen.request")

REQUEST_ID_HEADER = "Broen-Request-Id"


def install_common(app: FastAPI) -> None:
    """Problem handlers, `/healthz`, `/readyz` and a request log with route templates only."""
    install_problem_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> dict[str, str]:
        try:
            async with request.app.state.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            raise ServiceUnavailable("The database is not reachable.") from None
        return {"status": "ready"}

    @app.middleware("http")
    async def request_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get(REQUEST_ID_HEADER) or str(uuid.uuid4())
        request.state.request_id = request_id
        started = time.perf_counter()
        response = await call_next(request)
        response.headers[REQUEST_ID_HEADER] = request_id
        if log.isEnabledFor(logging.INFO):
            route = request.scope.get("route")
            log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": request.method,
                    "route": getattr(route, "path", "unmatched"),
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
        return response
