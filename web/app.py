"""The web app: server-rendered pages for staff and participants on top of the gateway's
public API. Its own process and port (8080), no database; `make run` starts it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.app import RequestLogMiddleware
from shared.metrics import install_metrics
from shared.settings import ConfigurationError, is_loopback
from web import participant, signin, staff
from web.api import ApiError, SessionExpired
from web.forms import SubmittedForms
from web.keys import session_secret
from web.pages import render, sign_in_location
from web.session import CsrfRefused, NeedsSignIn, Sessions
from web.settings import WebSettings
from web.tokens import GatewayTokens

log = logging.getLogger("broen.web")

SESSION_COOKIE = "broen_session"
# Everything from this origin; no inline script or style, no framing, forms post only here.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def create_app(settings: WebSettings) -> FastAPI:
    if settings.is_dev and not is_loopback(settings.host):
        raise ConfigurationError(
            f"BROEN_ENV=dev is only allowed on a loopback listener, not {settings.host}"
        )
    if not settings.is_dev and not settings.public_url.startswith("https://"):
        raise ConfigurationError("BROEN_WEB_PUBLIC_URL must be https:// outside dev mode")
    try:
        secret = session_secret(settings.keys_dir, settings.session_key_file)
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"the web app's session key: {error}") from None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            base_url=settings.gateway_url, timeout=settings.gateway_timeout_seconds
        ) as http:
            app.state.http = http
            app.state.tokens = GatewayTokens.load(
                http,
                issuer=settings.gateway_url,
                keys_dir=settings.keys_dir,
                key_file=settings.client_key_file,
                staff_clients=settings.staff_clients,
                citizen_client=settings.citizen_client,
            )
            yield

    app = FastAPI(title="Broen", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.sessions = Sessions(secret, max_seconds=settings.session_max_seconds)
    app.state.submitted_forms = SubmittedForms()
    app.state.oauth = signin.oauth_clients(settings)
    app.include_router(signin.router)
    app.include_router(staff.router)
    app.include_router(participant.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    _install_error_pages(app)
    install_metrics(app, "web")
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_idle_seconds,
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestLogMiddleware, component="web")
    return app


def _install_error_pages(app: FastAPI) -> None:
    """Every error is a page in plain Norwegian; never a stack trace or the API's English."""

    @app.exception_handler(NeedsSignIn)
    async def needs_sign_in(request: Request, error: Exception) -> Response:
        assert isinstance(error, NeedsSignIn)
        return RedirectResponse(sign_in_location(request, expired=error.expired), 303)

    @app.exception_handler(SessionExpired)
    async def session_expired(request: Request, _: Exception) -> Response:
        request.session.clear()
        return RedirectResponse(sign_in_location(request, expired=True), 303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, _: Exception) -> Response:
        sessions: Sessions = request.app.state.sessions
        if sessions.person(request) is None:
            return RedirectResponse(sign_in_location(request, expired=True), 303)
        message = "Skjemaet var utløpt. Last inn siden på nytt og prøv igjen."
        return render(request, "error.html", status_code=403, message=message)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, ApiError)
        status = error.status if error.status < 500 else 503
        return render(request, "error.html", status_code=status, message=error.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, _: Exception) -> HTMLResponse:
        return render(request, "error.html", status_code=404, message="Fant ikke siden.")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: Exception) -> HTMLResponse:
        assert isinstance(error, StarletteHTTPException)
        message = "Fant ikke siden." if error.status_code == 404 else "Noe gikk galt."
        return render(request, "error.html", status_code=error.status_code, message=message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> HTMLResponse:
        # The type only: a message could quote what was sent.
        log.error("unexpected error", extra={"error_type": type(error).__name__})
        message = "Noe gikk galt hos oss. Prøv igjen om litt."
        return render(request, "error.html", status_code=500, message=message)


class SecurityHeaders:
    """Plain ASGI (BaseHTTPMiddleware costs too much per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
