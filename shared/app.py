"""What every component's FastAPI app has: problem handlers, health, request ids, logs."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
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
from shared.outbox import OutboxMixin, outbox_router
from shared.problems import (
    Problem,
    ServiceUnavailable,
    install_problem_handlers,
    problem_response,
)
from shared.relay import OutboxRelay
from shared.settings import ComponentSettings

log = logging.getLogger("broen.request")

REQUEST_ID_HEADER = "Broen-Request-Id"
REQUEST_ID_HEADER_BYTES = REQUEST_ID_HEADER.lower().encode()
# The request being served, for logs and for the calls it makes to other services.
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


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

    app.add_middleware(RequestLogMiddleware)


class RequestLogMiddleware:
    """Request ids and one log line per request with the route template, never the URL
    (a URL may hold ids). Plain ASGI: BaseHTTPMiddleware costs too much per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": getattr(scope.get("route"), "path", "unmatched"),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )


# A caller's own request id is kept only if it looks like an id: it is logged and sent on,
# so free text (which could be personal data) is replaced by one of ours.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


class BodyTooLarge(Problem):
    status = 413
    type = "body-too-large"
    title = "The request body is too large"


class BodySizeLimit:
    """Refuses a body over `max_bytes` with a 413 problem: at once when Content-Length says
    so, else as soon as the streamed body passes the limit (never read whole)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = BodyTooLarge(f"A request body may hold at most {self.max_bytes} bytes.")
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await problem_response(too_large)(scope, receive, send)
                return
        received = 0
        exceeded = responded = False

        async def counted() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True  # the app sees the client gone; the answer is ours
                    return {"type": "http.disconnect"}
            return message

        async def refuse() -> None:
            nonlocal responded
            if not responded:
                responded = True
                await problem_response(too_large)(scope, receive, send)

        async def guarded(message: Message) -> None:
            if exceeded:
                await refuse()
            else:
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not exceeded:
                raise
        if exceeded:
            await refuse()


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
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
    *,
    outbox: type[OutboxMixin],
) -> FastAPI:
    """A service's app. No docs or OpenAPI: the gateway publishes the public document, and a
    service port answers only health checks and calls that carry an internal token. The
    gateway takes the outbox's events through `/internal/v1/outbox` when there is no NATS."""
    app = FastAPI(title=title, version="1", lifespan=lifespan, openapi_url=None)
    install_common(app)
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
            yield
        finally:
            if relay is not None:
                await relay.aclose()
            if jetstream is not None:
                await jetstream.aclose()
            await app.state.engine.dispose()

    return lifespan
