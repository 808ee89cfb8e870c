"""The gateway's public API, called with the signed-in person's own token: the web app sees
exactly what the API would show any client acting for them, and nothing more."""

from __future__ import annotations

from typing import Any

import httpx

from web import texts

PURPOSE_HEADER = "Broen-Purpose"


class ApiError(Exception):
    """The API refused or could not answer. `message` is for the page; the problem's own
    detail is English for integrators and is not shown."""

    def __init__(self, status: int, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"the API answered {status}")
        self.status = status
        self.body = body or {}

    @property
    def message(self) -> str:
        return texts.problem(self.status, self.body)

    @property
    def invalid_fields(self) -> dict[str, str]:
        return texts.invalid_fields(self.body) if self.status == 422 else {}


class SessionExpired(Exception):
    """The person's token is no longer accepted: they sign in again."""


class Api:
    def __init__(self, http: httpx.AsyncClient, token: str) -> None:
        self._http = http
        self._headers = {"Authorization": f"Bearer {token}"}

    async def get(
        self, path: str, *, purpose: str | None = None, params: dict[str, Any] | None = None
    ) -> Any:
        return (await self.call("GET", path, purpose=purpose, params=params)).json()

    async def post(self, path: str, body: Any = None, *, purpose: str | None = None) -> Any:
        response = await self.call("POST", path, purpose=purpose, json=body)
        return response.json() if response.content else None

    async def call(
        self, method: str, path: str, *, purpose: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(self._headers)
        if purpose is not None:
            headers[PURPOSE_HEADER] = purpose
        try:
            response = await self._http.request(method, "/api/v1" + path, headers=headers, **kwargs)
        except httpx.HTTPError:
            raise ApiError(503) from None
        if response.status_code == 401:
            raise SessionExpired()
        if response.status_code >= 400:
            raise ApiError(response.status_code, _problem(response))
        return response


def _problem(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
