"""Fuzzing from the gateway's OpenAPI document (issue "Survives", bad input): schemathesis
generates requests for every operation, valid by the schema and invalid on purpose, and the
whole stack in-process answers them for a teacher, a veileder and a participant, each with
a valid token. Every answer is declared (status code, content type, headers and body by
the schema), none is a 5xx, and every error is a problem document. On SQLite and
PostgreSQL, with a fixed number of examples per operation, generated derandomised: every
run sends the same requests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.system.conftest import ISSUER, Stack
from tests.system.test_hostile_inputs import resources_of
from tests.system.world import SCOPES, World, world

PROBLEM = "application/problem+json"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CALLERS = ("teacher", "veileder", "participant")
# Cases per operation, valid by the schema and invalid on purpose. PostgreSQL sends the
# first of the same cases: each request costs more there, and both run in CI.
EXAMPLES = {"sqlite": (10, 5), "postgresql": (5, 3)}
PURPOSE = "Broen-Purpose"

# RFC 6749 §5.2: the token endpoint's errors are OAuth error documents (`{"error": ...}`,
# what OAuth client libraries parse), not problem documents. Its schema is still checked.
OAUTH_ERRORS = {"POST /oauth/token"}


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    # The world's subscription points at loopback (resources_of).
    return {"webhook_allowed_networks": ["127.0.0.0/8"]}


@dataclass
class Planned:
    """Generated cases of one operation in one mode, the same for every caller and backend."""

    operation: APIOperation
    mode: GenerationMode
    cases: list[Case]


_planned: list[Planned] = []


def planned(document: dict[str, Any]) -> list[Planned]:
    """Every operation's cases, generated once per session (generation is the slow part,
    and the document is the same for every stack)."""
    if not _planned:
        schema = schemathesis.openapi.from_dict(document)
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in GenerationMode.POSITIVE, GenerationMode.NEGATIVE:
                most = max(examples_of(backend, mode) for backend in EXAMPLES)
                _planned.append(Planned(operation, mode, examples(operation, mode, most)))
    return _planned


def examples_of(backend: str, mode: GenerationMode) -> int:
    positive, negative = EXAMPLES[backend]
    return positive if mode is GenerationMode.POSITIVE else negative


def examples(operation: APIOperation, mode: GenerationMode, count: int) -> list[Case]:
    """`count` cases of the operation, the same ones on every run."""
    drawn: list[Case] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(mode))
    def collect(case: Case) -> None:
        drawn.append(case)

    try:
        collect()
    except Unsatisfiable:
        # Nothing in the operation can be made invalid (no parameters, no body).
        assert mode is GenerationMode.NEGATIVE and not drawn
    return drawn


async def known_ids(stack: Stack, w: World) -> dict[str, str]:
    """Values that name things in the world, by the parameter or body field they go in."""
    ids = await resources_of(stack, w)
    # A second consent request stays pending, so accept and decline have one to act on.
    asked = await stack.http.post(
        "/api/v1/consent-requests",
        json={
            "participant_id": w.participant,
            "disclosers": ["nav"],
            "recipients": ["skole"],
            "purposes": ["oppfolging"],
            "categories": ["contact"],
            "justification": "Skolen vil kunne ringe deg.",
        },
        headers=await stack.as_org(w.skole),
    )
    assert asked.status_code == 201, asked.status_code
    return {
        "participant_id": w.participant,
        "participation_id": ids["programme"],
        "consent_id": ids["consent"],
        "request_id": str(asked.json()["id"]),
        "thread_id": ids["thread"],
        "subscription_id": ids["subscription"],
        "orgnr": w.skole.orgnr,
        "national_id": w.national_id,
    }


def grounded(case: Case, known: dict[str, str]) -> Case:
    """The case with the world's ids in its path, query and body, and a purpose the
    callers' roles may declare, so it reaches the policy and the services rather than
    stopping at a 404 or a refused purpose. Other generated values stay."""
    headers = case.headers.copy()
    if any(parameter.name == PURPOSE for parameter in case.operation.headers):
        headers[PURPOSE] = "oppfolging"
    derived = case.derive(headers=headers)
    containers = [derived.path_parameters, derived.query]
    if isinstance(derived.body, dict):
        containers.append(derived.body)
    for container in containers:
        for name in container.keys() & known.keys():
            container[name] = known[name]
    return derived


def credentials(stack: Stack, w: World, caller: str) -> dict[str, str]:
    """A valid token of the caller; staff hold every scope their organisation's client has."""
    if caller == "teacher":
        return stack.as_staff(w.skole, w.teacher, purpose=None, scopes=tuple(SCOPES))
    if caller == "veileder":
        return stack.as_staff(w.nav, w.veileder, purpose=None, scopes=tuple(SCOPES))
    return stack.as_citizen(w.participant)


async def send(http: httpx.AsyncClient, case: Case, headers: dict[str, str]) -> httpx.Response:
    """The case on the wire as schemathesis serialises it, through the in-process stack."""
    kwargs = case.as_transport_kwargs(base_url=ISSUER, headers=headers)
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=kwargs.get("headers"),
        params=kwargs.get("params"),
        cookies=kwargs.get("cookies"),
        data=kwargs.get("data"),
        json=kwargs.get("json"),
        files=kwargs.get("files"),
    ).prepare()
    assert prepared.method is not None and prepared.url is not None
    return await http.request(
        prepared.method, prepared.url, headers=dict(prepared.headers), content=prepared.body
    )


def problem_failures(response: httpx.Response) -> list[str]:
    """What keeps an error answer from being a problem document (RFC 9457)."""
    if response.status_code < 400:
        return []
    content_type = response.headers.get("content-type")
    if content_type != PROBLEM:
        return [f"content type {content_type!r}, not {PROBLEM}"]
    try:
        body = response.json()
    except json.JSONDecodeError:
        return ["the body is not JSON"]
    if not isinstance(body, dict):
        return ["the body is not an object"]
    found = [
        f"no {name} ({kind.__name__})"
        for name, kind in (("type", str), ("title", str), ("status", int))
        if not isinstance(body.get(name), kind)
    ]
    if body.get("status") != response.status_code:
        found.append("its status is not the response's")
    return found


def described(failure: Failure) -> str:
    """A failure in words holding no value from the response (it may be personal data)."""
    if isinstance(failure, JsonSchemaError):
        where = "/".join(map(str, failure.instance_path)) or "(root)"
        rule = "/".join(map(str, failure.schema_path))
        return f"{failure.title}: at {where}, schema rule {rule}"
    return f"{failure.title}: {failure.message}"


@pytest.mark.anyio
@pytest.mark.parametrize("caller", CALLERS)
async def test_every_operation_answers_as_its_schema_declares(
    stack: Stack, db_backend: str, caller: str
) -> None:
    w = await world(stack)
    known = await known_ids(stack, w)
    headers = credentials(stack, w, caller)
    failures: set[str] = set()
    sent = 0

    # An exception the gateway does not handle becomes the 500 a client would get, reported
    # with its operation instead of ending the run.
    transport = httpx.ASGITransport(app=stack.gateway, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
        document = (await http.get("/openapi.json")).json()
        for plan in planned(document):
            for index, generated in enumerate(plan.cases[: examples_of(db_backend, plan.mode)]):
                # Every other case keeps its generated ids and purpose.
                case = grounded(generated, known) if index % 2 == 0 else generated
                response = await send(http, case, headers)
                sent += 1
                label = f"{plan.operation.label} ({plan.mode.value}) -> {response.status_code}"
                try:
                    case.validate_response(response, checks=CHECKS)
                except FailureGroup as group:
                    failures.update(
                        f"{label}: {described(failure)}" for failure in group.exceptions
                    )
                if plan.operation.label not in OAUTH_ERRORS:
                    failures.update(
                        f"{label}: not a problem document: {failure}"
                        for failure in problem_failures(response)
                    )

    # Every operation of the document was tried (operations with no parameter and no body
    # have no invalid cases, the others have both kinds).
    assert {plan.operation.label for plan in planned(document) if plan.cases} == {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert sent >= len(planned(document))
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(sorted(failures))
