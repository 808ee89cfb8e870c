"""Authentication dependencies of the gateway's public routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from gateway.oauth import SCOPES, AuthRuntime
from shared.internal_auth import CallerContext
from shared.problems import Forbidden, InsufficientScope, Unauthorized

# The callers that act for an organisation: a system (client_credentials) or a staff member.
ORGANISATION_CALLERS = frozenset({"system", "staff"})
# A citizen token reaches only these routes (API.md, "Who is the caller").
CITIZEN_PREFIX = "/api/v1/me/"


class CitizenRouteOnly(Forbidden):
    type = "citizen-route-only"
    title = "Not a route for citizen tokens"

    def __init__(self) -> None:
        super().__init__(f"A citizen token reaches only {CITIZEN_PREFIX}...")


async def authenticated_caller(request: Request) -> CallerContext:
    """The caller of the verified `Authorization: Bearer` access token, or a 401 problem."""
    header = request.headers.get("authorization")
    if not header:
        problem = Unauthorized("This request needs an access token.")
        # RFC 6750 §3.1: a request without credentials gets the bare challenge, no error code.
        problem.headers = {"WWW-Authenticate": "Bearer"}
        raise problem
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("The Authorization header must be 'Bearer <access token>'.")
    runtime: AuthRuntime = request.app.state.auth
    caller = runtime.tokens.verify(token)
    # Checked here, not per route: a route that needs no scope still serves organisations only.
    if caller.kind == "citizen" and not request.url.path.startswith(CITIZEN_PREFIX):
        raise CitizenRouteOnly()
    request.state.caller = caller
    await request.app.state.rate_limits.check(caller)
    return caller


CallerDep = Annotated[CallerContext, Depends(authenticated_caller)]


def require_scope(scope: str) -> Callable[[CallerContext], Awaitable[CallerContext]]:
    """A dependency returning the caller if its token holds `scope`, else a 403 problem."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def caller_with_scope(caller: CallerDep) -> CallerContext:
        # Scopes are an organisation's; a citizen token never passes, whatever it holds.
        if caller.kind not in ORGANISATION_CALLERS or scope not in caller.scopes:
            raise InsufficientScope(scope)
        return caller

    return caller_with_scope
