"""Rate limits per client: over the limit a 429 problem with Retry-After, other clients
unaffected, and the client served again when the window has passed; counted in memory
and in a real Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.system.conftest import Organisation, Stack

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "redis"])
def counter(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


@pytest.fixture
def gateway_overrides(counter: str | None) -> dict[str, Any]:
    return {"rate_limit": "3/second", "redis_url": counter}


async def test_a_client_over_its_limit_gets_a_429_with_retry_after_until_the_window_passes(
    stack: Stack,
) -> None:
    skole = await stack.add_organisation("310123455", "skole")
    nav = await stack.add_organisation("889640782", "nav")
    school, navs = await stack.as_org(skole), await stack.as_org(nav)
    # A fresh one-second window, so counts of earlier tests (same Redis) are gone.
    await asyncio.sleep(1.02 - time.time() % 1)

    # All four at once: one after the other they could straddle two windows on a busy machine.
    answers = await asyncio.gather(
        *(stack.http.get("/api/v1/organisations", headers=school) for _ in range(4))
    )
    other = await stack.http.get("/api/v1/organisations", headers=navs)
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 429]
    refused = next(a for a in answers if a.status_code == 429)
    await asyncio.sleep(float(refused.headers["Retry-After"]))
    again = await stack.http.get("/api/v1/organisations", headers=school)

    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/rate-limited")
    assert refused.json()["retry_after"] == int(refused.headers["Retry-After"]) == 1
    assert other.status_code == 200  # per client, not per address
    assert again.status_code == 200


async def test_an_unreadable_limit_stops_the_gateway_at_start(stack: Stack) -> None:
    from gateway.app import create_app

    with pytest.raises(ValueError):
        create_app(stack.gateway_settings.model_copy(update={"rate_limit": "lots"}))


async def test_token_requests_are_limited_per_client_before_any_signature_is_checked(
    stack: Stack,
) -> None:
    skole = await stack.add_organisation("310123455", "skole")
    nav = await stack.add_organisation("889640782", "nav")
    await asyncio.sleep(1.02 - time.time() % 1)

    def form(organisation: Organisation) -> dict[str, str]:
        return {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": stack.assertion(organisation),
        }

    answers = [await stack.http.post("/oauth/token", data=form(skole)) for _ in range(4)]
    other = await stack.http.post("/oauth/token", data=form(nav))

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].headers["content-type"] == "application/problem+json"
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert other.status_code == 200
