"""Typed service-to-service calls: one long-lived HTTP client per upstream service,
explicit timeouts, an internal token for the caller on every call, the request id passed
on, and problems turned into exceptions (a 5xx or an unreachable service is a 503)."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from httpx_aiohttp import AiohttpTransport
from pydantic import BaseModel

from shared.app import REQUEST_ID_HEADER
from shared.internal_auth import CallerContext, InternalTokenSigner, internal_headers
from shared.logs import current_request_id
from shared.problems import PROBLEM_BASE, Problem, ServiceUnavailable
from shared.telemetry import Tracing

M = TypeVar("M", bound=BaseModel)


class UpstreamProblem(Problem):
    """A problem answered by a service, passed on to the caller as it was."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("detail", "")))
        self.status = status
        self._body = body

    def body(self) -> dict[str, Any]:
        return self._body


class Upstream:
    """One service behind the gateway."""

    def __init__(
        self,
        name: str,
        base_url: str,
        signer: InternalTokenSigner,
        *,
        timeout_seconds: float,
        connect_timeout_seconds: float,
        transport: httpx.AsyncBaseTransport | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.name = name
        self.signer = signer
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        self.http = httpx.AsyncClient(
            base_url=base_url,
            # aiohttp's connection pool under httpx's interface: httpcore's pool polls every
            # pooled socket on each request (encode/httpx#3215), which made the hop cost more
            # CPU than the service behind it (PERFORMANCE.md).
            transport=transport or AiohttpTransport(limits=limits, trust_env=False),
            timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
            limits=limits,
        )
        if tracing is not None:
            tracing.instrument_client(self.http)

    def headers_for(self, caller: CallerContext) -> dict[str, str]:
        headers = internal_headers(self.signer, self.name, caller)
        request_id = current_request_id.get()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        return headers

    async def send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return await self.http.send(request, stream=stream)
        except (httpx.TransportError, httpx.TimeoutException):
            raise ServiceUnavailable(
                f"The {self.name} service is not answering; try again shortly."
            ) from None

    async def call(
        self,
        method: str,
        path: str,
        caller: CallerContext,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        read_timeout_seconds: float | None = None,
    ) -> httpx.Response:
        """`read_timeout_seconds` replaces the read timeout for a call known to take long
        (a bulk write); connecting is never given longer."""
        all_headers = self.headers_for(caller)
        if content is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        timeout = self.http.timeout
        if read_timeout_seconds is not None:
            timeout = httpx.Timeout(
                read_timeout_seconds, connect=timeout.connect, pool=timeout.pool
            )
        response = await self.send(
            self.http.build_request(
                method, path, content=content, headers=all_headers, params=params, timeout=timeout
            )
        )
        if response.status_code >= 400:
            raise _problem_from(self.name, response)
        return response

    async def fetch(
        self,
        model: type[M],
        method: str,
        path: str,
        caller: CallerContext,
        *,
        content: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        read_timeout_seconds: float | None = None,
    ) -> tuple[M, int]:
        """The answer parsed into its model, and the status."""
        response = await self.call(
            method,
            path,
            caller,
            content=content,
            params=params,
            headers=headers,
            read_timeout_seconds=read_timeout_seconds,
        )
        return model.model_validate_json(response.content), response.status_code

    async def aclose(self) -> None:
        await self.http.aclose()


def _problem_from(name: str, response: httpx.Response) -> Problem:
    if response.status_code == 503 and (refusal := _service_unavailable(response)) is not None:
        return refusal
    if response.status_code >= 500:
        return ServiceUnavailable(f"The {name} service could not answer; try again shortly.")
    if response.status_code == 401:
        # The gateway's own internal token was refused: a configuration fault, not the caller's.
        return ServiceUnavailable(f"The {name} service refused the gateway; try again shortly.")
    try:
        body = response.json()
    except ValueError:
        body = {"title": "Upstream error", "status": response.status_code}
    return UpstreamProblem(response.status_code, body)


def _service_unavailable(response: httpx.Response) -> Problem | None:
    """A service's own 503 problem (its database is down, say), passed on with its type and
    Retry-After, so a client learns what it is waiting for; None if it is not one of ours."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not str(body.get("type", "")).startswith(PROBLEM_BASE):
        return None
    problem = UpstreamProblem(503, body)
    problem.headers = {"Retry-After": response.headers.get("Retry-After", "1")}
    return problem
