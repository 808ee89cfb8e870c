"""What every component's FastAPI app has: problem handlers, health, metrics, traces,
request ids, logs."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.crypto import Keyring
from shared.db import make_engine, make_sessionmaker
from shared.internal_auth import InternalTokenVerifier
from shared.jetstream import JetStream
from shared.keys import load_internal_key_set
from shared.logs import current_request_id
from shared.metrics import install_metrics, observe_request
from shared.outbox import OutboxMixin, outbox_router
from shared.problems import (
    DatabaseUnavailable,
    Problem,
    install_problem_handlers,
    problem_response,
)
from shared.relay import OutboxRelay
from shared.settings import ComponentSettings
from shared.telemetry import Tracing

log = logging.getLogger("broen.request")

REQUEST_ID_HEADER = "Broen-Request-Id"
REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.lower().encode()


def install_common(
    app: FastAPI,
    component: str,
    settings: ComponentSettings,
    *,
    outbox: type[OutboxMixin] | None = None,
) -> None:
    """Problem handlers, `/healthz`, `/readyz`, `/metrics`, traces when an OTLP endpoint is
    configured (`app.state.tracing`; the lifespan instruments the engine and clients with
    it), and a request log with route templates only."""
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
            raise DatabaseUnavailable() from None
        return {"status": "ready"}

    install_metrics(app, component, outbox=outbox)
    app.add_middleware(RequestLogMiddleware, component=component)
    app.state.tracing = Tracing.configured(component, settings.otlp_endpoint)
    if app.state.tracing is not None:
        app.state.tracing.instrument_app(app)


class RequestLogMiddleware:
    """Request ids and one log line per request with the route template, never the URL
    (a URL may hold ids). Plain ASGI: BaseHTTPMiddleware costs too much per request."""

    def __init__(self, app: ASGIApp, component: str) -> None:
        self.app = app
        self.component = component

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _caller_request_id(scope) or str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        current_request_id.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (REQUEST_ID_HEADER_BYTES, request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            observe_request(self.component, scope["method"], route, status, seconds)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                    },
                )


# A caller's own request id is kept only if it looks like an id: it is logged and sent on,
# so free text (which could be personal data) is replaced by one of ours.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


class BodyTooLarge(Problem):
    status = 413
    type = "body-too-large"
    title = "The request body is too large"


class BodyTooSlow(Problem):
    status = 408
    type = "body-timeout"
    title = "The request body did not arrive in time"


class BodyLimits:
    """Refuses a body over `max_bytes` with a 413 problem: at once when Content-Length says
    so, else as soon as the streamed body passes the limit (never read whole). A body not
    received within `timeout_seconds` of the request's start is a 408 problem, so a slow
    sender cannot hold a worker's request open."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_seconds: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = BodyTooLarge(f"A request body may hold at most {self.max_bytes} bytes.")
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await problem_response(too_large)(scope, receive, send)
                return
        deadline = asyncio.get_running_loop().time() + self.timeout_seconds
        received = 0
        refusal: Problem | None = None
        responded = body_done = False

        async def counted() -> Message:
            nonlocal received, refusal, body_done
            if body_done:
                return await receive()  # after the body: only a disconnect comes
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                refusal = BodyTooSlow(
                    f"The body must arrive within {self.timeout_seconds:g} seconds."
                )
                return {"type": "http.disconnect"}  # the app sees the client gone
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > self.max_bytes:
                    refusal = too_large
                    return {"type": "http.disconnect"}
            return message

        async def refuse(problem: Problem) -> None:
            nonlocal responded
            if not responded:
                responded = True
                await problem_response(problem)(scope, receive, send)

        async def guarded(message: Message) -> None:
            if refusal is not None:
                await refuse(refusal)
            else:
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if refusal is None:
                raise
        if refusal is not None:
            await refuse(refusal)


def _caller_request_id(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == REQUEST_ID_HEADER_BYTES:
            given: str = value.decode("latin-1")
            return given if _REQUEST_ID.fullmatch(given) else None
    return None


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """The model as a JSON answer, serialised once (returning the model from a route would
    have FastAPI validate it again against the route's annotation)."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")


async def get_keyring(request: Request) -> Keyring:
    """The component's field-encryption keyring, loaded at start into `app.state.keyring`."""
    keyring: Keyring = request.app.state.keyring
    return keyring


KeyringDep = Annotated[Keyring, Depends(get_keyring)]


def create_service_app(
    title: str,
    component: str,
    settings: ComponentSettings,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    *,
    outbox: type[OutboxMixin],
) -> FastAPI:
    """A service's app. No docs or OpenAPI: the gateway publishes the public document, and a
    service port answers only health checks and calls that carry an internal token. The
    gateway takes the outbox's events through `/internal/v1/outbox` when there is no NATS."""
    app = FastAPI(title=title, version="1", lifespan=lifespan, openapi_url=None)
    install_common(app, component, settings, outbox=outbox)
    app.include_router(outbox_router(outbox))
    return app


def service_lifespan(
    settings: ComponentSettings,
    component: str,
    trusted_callers: set[str],
    *,
    outbox: type[OutboxMixin],
    state: dict[str, Any] | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The lifespan every service has: engine, sessions, the internal-token check, the
    outbox relay when NATS is configured, and `state` of its own. Keys are loaded now, so a
    missing key stops the start at once with a message that names the file."""
    verifier = InternalTokenVerifier(
        component, load_internal_key_set(settings.keys_dir), trusted_callers
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.internal_verifier = verifier
        for name, value in (state or {}).items():
            setattr(app.state, name, value)
        app.state.engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
        app.state.sessionmaker = make_sessionmaker(app.state.engine)
        tracing: Tracing | None = app.state.tracing
        if tracing is not None:
            tracing.instrument_engine(app.state.engine)
        jetstream = relay = None
        try:
            if settings.nats_url:
                jetstream = await JetStream.connect(settings.nats_url, settings.nats_stream)
                relay = OutboxRelay(
                    app.state.sessionmaker,
                    outbox,
                    jetstream,
                    interval_seconds=settings.events_interval_seconds,
                )
                relay.start()
            app.state.relay = relay
            app.state.jetstream = jetstream
            yield
        finally:
            if relay is not None:
                await relay.aclose()
            if jetstream is not None:
                await jetstream.aclose()
            await app.state.engine.dispose()
            if tracing is not None:
                tracing.shutdown()

    return lifespan
