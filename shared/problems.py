"""RFC 9457 problem details: one exception base, one set of handlers."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.db import database_unavailable

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://broen.no/problems/"

log = logging.getLogger("broen.problems")


class Problem(Exception):
    """An error a client can act on. Subclasses set status, type and title.

    `detail` is plain words for the caller and must never hold personal data.
    """

    status: int = 400
    type: str = "bad-request"
    title: str = "Bad request"
    headers: dict[str, str] | None = None

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extensions = extensions

    @classmethod
    def of(cls, status: int, type: str, title: str, detail: str | None = None) -> Problem:
        """A problem whose kind is only known at run time (e.g. an upstream's status)."""
        problem = cls(detail or title)
        problem.status, problem.type, problem.title = status, type, title
        return problem

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        # An extension never replaces a member RFC 9457 defines (a `status` extension once
        # turned the HTTP status into a word).
        body.update((name, value) for name, value in self.extensions.items() if name not in body)
        return body


class NotFound(Problem):
    status = 404
    type = "not-found"
    title = "Not found"


class Unauthorized(Problem):
    status = 401
    type = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, *, error: str = "invalid_token") -> None:
        super().__init__(detail)
        self.headers = {"WWW-Authenticate": f'Bearer error="{error}"'}


class Forbidden(Problem):
    status = 403
    type = "forbidden"
    title = "Forbidden"


class InsufficientScope(Problem):
    status = 403
    type = "insufficient-scope"
    title = "Insufficient scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"This request needs the scope '{scope}'.", required_scope=scope)
        self.headers = {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'}


class PreconditionFailed(Problem):
    status = 412
    type = "precondition-failed"
    title = "Precondition failed"


class PreconditionRequired(Problem):
    status = 428
    type = "precondition-required"
    title = "Precondition required"


class Conflict(Problem):
    status = 409
    type = "conflict"
    title = "Conflict"


class ServiceUnavailable(Problem):
    status = 503
    type = "service-unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": "1"}


class DatabaseUnavailable(ServiceUnavailable):
    type = "database-unavailable"
    title = "Database unavailable"

    def __init__(self) -> None:
        super().__init__("The database is not reachable; try again shortly.")


class ValidationProblem(Problem):
    status = 422
    type = "validation-error"
    title = "The request is not valid"


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        problem.body(),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=problem.headers,
    )


_PLACES = frozenset({"body", "query", "path", "header", "cookie"})


def validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """Field positions and messages of pydantic errors, never the offending values."""
    listed = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        # The first part says where (body, query, path, header); a field may be named "body".
        field = location[1:] if location[:1] and location[0] in _PLACES else location
        entry = {
            "field": ".".join(field),
            "location": location,
            "message": _message_without_input(error),
            "code": error.get("type", "invalid"),
        }
        # Our validators may point into a text (e.g. where a national id is), never quote it.
        position = (error.get("ctx") or {}).get("position")
        if isinstance(position, int):
            entry["position"] = position
        listed.append(entry)
    return listed


def _message_without_input(error: dict[str, Any]) -> str:
    # pydantic's "Value error, ..." messages come from our validators, which never
    # quote the input; for JSON decode errors the message names the position only.
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


async def _handle_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc)


async def _handle_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(list(exc.errors()))
    detail = (
        "Malformed JSON body."
        if any(e["code"] == "json_invalid" for e in errors)
        else "One or more fields are not valid."
    )
    return problem_response(ValidationProblem(detail, errors=errors))


async def _handle_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}.get(
        exc.status_code, "http-error"
    )
    problem = Problem.of(exc.status_code, kind, str(exc.detail))
    problem.headers = dict(exc.headers) if exc.headers else None
    return problem_response(problem)


async def _handle_database_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_unavailable(exc):
        raise exc  # a fault of the code (an integrity error, a bad statement): a 500
    log.warning(
        "database unavailable",
        extra={
            "error_type": type(exc).__name__,
            "driver_error_type": _innermost(exc),
            "path_template": _route_template(request),
        },
    )
    return problem_response(DatabaseUnavailable())


def _innermost(exc: BaseException) -> str:
    """The type name of the driver's own error under SQLAlchemy's wrappers (e.g. asyncpg's
    CannotConnectNowError): says what happened without the message, which may hold data."""
    seen = {id(exc)}
    while (inner := getattr(exc, "orig", None) or exc.__cause__) is not None:
        if id(inner) in seen:
            break
        seen.add(id(inner))
        exc = inner
    return type(exc).__name__


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The exception text may carry data from the request; log its type only.
    log.error(
        "unhandled error",
        extra={"error_type": type(exc).__name__, "path_template": _route_template(request)},
    )
    return problem_response(
        Problem.of(
            500, "internal-error", "Internal error", "The server could not complete the request."
        )
    )


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", "unmatched")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _handle_problem)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    # What the database raises when it cannot be reached is a 503 problem (see
    # shared.db.database_unavailable); any other database error stays a 500.
    for database_error in (DBAPIError, PoolTimeout, ConnectionError, TimeoutError):
        app.add_exception_handler(database_error, _handle_database_error)
    app.add_exception_handler(Exception, _handle_unexpected)


PROBLEM_RESPONSE_SCHEMA: dict[str, Any] = {
    "description": "Problem details (RFC 9457)",
    "content": {
        PROBLEM_MEDIA_TYPE: {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string", "format": "uri"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
                "required": ["type", "title", "status"],
            }
        }
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for routes, so the OpenAPI document lists their problems."""
    return {status: PROBLEM_RESPONSE_SCHEMA for status in statuses}
