"""The gateway as a public entry: its OpenAPI document, problems, and a service that is down."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.system.conftest import ISSUER, Stack

pytestmark = pytest.mark.anyio


async def test_the_gateway_serves_the_public_openapi_document_with_every_schema(
    stack: Stack,
) -> None:
    response = await stack.http.get("/openapi.json")

    document = response.json()
    schemas = document["components"]["schemas"]
    assert {"ParticipantCreate", "ParticipantRead", "ParticipantUpdate", "Provenance"} <= set(
        schemas
    )
    assert "national_id" not in schemas["ParticipantRead"]["properties"]
    assert {"/oauth/token", "/api/v1/participants", "/api/v1/participants/lookup"} <= set(
        document["paths"]
    )
    read = document["paths"]["/api/v1/participants/{participant_id}"]["get"]
    assert read["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ParticipantRead"
    }
    assert "application/problem+json" in read["responses"]["404"]["content"]


async def test_an_unknown_route_is_a_problem_not_an_html_page(stack: Stack) -> None:
    response = await stack.http.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_participant_routes_need_a_token(stack: Stack) -> None:
    response = await stack.http.get("/api/v1/participants/00000000-0000-4000-8000-000000000000")

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_service_that_is_down_gives_a_quick_503_problem(
    keys_dir: Path, stack: Stack
) -> None:
    skole = await stack.add_organisation("310123455", "skole")
    token = await stack.token(skole)
    # A second gateway on the same database whose participant service is not listening.
    settings = GatewaySettings(
        database_url=stack.gateway_settings.database_url,
        keys_dir=keys_dir,
        issuer=ISSUER,
        participant_url="http://127.0.0.1:9",
        upstream_connect_timeout_seconds=0.5,
        audit_head_file=stack.gateway_settings.audit_head_file,
    )
    gateway = create_app(settings)
    async with gateway.router.lifespan_context(gateway):
        transport = httpx.ASGITransport(app=gateway)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            started = time.monotonic()
            response = await http.get(
                "/api/v1/participants/00000000-0000-4000-8000-000000000000",
                headers={"Authorization": f"Bearer {token}", "Broen-Purpose": "oppfolging"},
            )
            elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
    assert elapsed < 5  # bounded by the connect timeout, not a hang


async def test_organisations_stream_through_without_internal_headers(stack: Stack) -> None:
    skole = await stack.add_organisation("310123455", "skole")

    response = await stack.http.get("/api/v1/organisations", headers=await stack.as_org(skole))

    assert response.status_code == 200
    assert [o["orgnr"] for o in response.json()["items"]] == ["310123455"]
    assert not any(h.lower().startswith("broen-internal") for h in response.headers)
    assert "broen-caller-relationship" not in response.headers
    assert len(response.headers.get_list("broen-request-id")) == 1


async def test_an_oversized_body_is_refused_with_a_413_problem_before_it_is_read_whole(
    stack: Stack,
) -> None:
    limit = stack.gateway_settings.max_body_bytes
    skole = await stack.add_organisation("310123455", "skole")
    headers = {**(await stack.as_org(skole)), "Content-Type": "application/json"}

    declared = await stack.http.post(
        "/api/v1/participants", content=b"x" * (limit + 1), headers=headers
    )

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    streamed = await stack.http.post("/api/v1/participants", content=chunks(), headers=headers)

    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/body-too-large")
