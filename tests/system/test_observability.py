"""What an operator sees: Prometheus metrics on every component that count what happened,
and traces, exported over OTLP to a collector, that join the gateway's spans to the
services' and carry nothing shaped like a national id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from tests.otlp import Collector, exported_texts
from tests.system.conftest import Stack
from tests.system.test_events import everything_taken_in, until
from tests.system.test_timeline import absence
from tests.system.world import KARI, world

pytestmark = pytest.mark.anyio


# --- metrics ---------------------------------------------------------------------------------


async def scrape(
    stack: Stack, app: Any = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a component's /metrics (the gateway's unless `app` is given)."""
    if app is None:
        response = await stack.http.get("/metrics")
    else:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://service"
        ) as client:
            response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_requests_decisions_audit_appends_and_events(stack: Stack) -> None:
    w = await world(stack)
    await everything_taken_in(stack)
    route = "/api/v1/participants/{participant_id}"
    before = await scrape(stack)

    read = await stack.http.get(w.url, headers=await stack.as_org(w.skole))
    assert read.status_code == 200
    recorded = await stack.http.post(
        f"{w.url}/events", json=absence(), headers=await stack.as_org(w.skole)
    )
    assert recorded.status_code == 201, recorded.text
    await everything_taken_in(stack)
    after = await scrape(stack)

    requests = {"component": "gateway", "method": "GET", "route": route, "status": "200"}
    assert value(after, "broen_http_requests_total", **requests) == (
        value(before, "broen_http_requests_total", **requests) + 1
    )
    latency = {"component": "gateway", "method": "GET", "route": route}
    assert value(after, "broen_http_request_duration_seconds_count", **latency) == (
        value(before, "broen_http_request_duration_seconds_count", **latency) + 1
    )
    # The school reads its own values and is refused NAV's contact details (no consent).
    for outcome, reason in (("released", "own_organisation"), ("withheld", "no_consent")):
        labels = {"outcome": outcome, "reason": reason}
        assert value(after, "broen_policy_field_decisions_total", **labels) > value(
            before, "broen_policy_field_decisions_total", **labels
        )
    assert value(after, "broen_audit_appends_total") > value(before, "broen_audit_appends_total")
    assert value(after, "broen_events_ingested_total", transport="outbox") > value(
        before, "broen_events_ingested_total", transport="outbox"
    )
    assert value(after, "broen_event_ingest_lag_seconds_count") > value(
        before, "broen_event_ingest_lag_seconds_count"
    )
    # No label anywhere holds an id or a national id: routes are templates, and a method a
    # client makes up is counted as "other".
    await stack.http.request("BREW", f"/api/v1/participants/{KARI}")
    text = (await stack.http.get("/metrics")).text
    assert w.participant not in text and KARI not in text and "BREW" not in text
    assert 'method="other"' in text


async def test_every_service_reports_its_outbox_backlog(stack: Stack) -> None:
    w = await world(stack)
    participant = await scrape(stack, stack.participant)
    assert ("broen_outbox_pending_events", frozenset({("component", "participant")})) in participant
    await everything_taken_in(stack)

    for app, component in (
        (stack.participant, "participant"),
        (stack.consent, "consent"),
        (stack.messaging, "messaging"),
    ):
        # The gateway confirms what it took in a moment after its log holds it.
        async def drained(app: Any = app, component: str = component) -> bool:
            samples = await scrape(stack, app)
            return value(samples, "broen_outbox_pending_events", component=component) == 0

        await until(drained)
        samples = await scrape(stack, app)
        assert value(samples, "broen_outbox_oldest_pending_age_seconds", component=component) == 0
        assert (
            "broen_http_requests_total",
            frozenset(
                {
                    ("component", component),
                    ("method", "GET"),
                    ("route", "/internal/v1/outbox"),
                    ("status", "200"),
                }
            ),
        ) in samples
    assert w.participant


# --- traces ----------------------------------------------------------------------------------


@pytest.fixture
def collector() -> Iterator[Collector]:
    collector = Collector()
    yield collector
    collector.close()


@pytest.fixture
def gateway_overrides(collector: Collector) -> dict[str, Any]:
    return {"otlp_endpoint": collector.url}


@pytest.fixture
def service_overrides(collector: Collector) -> dict[str, Any]:
    return {"otlp_endpoint": collector.url}


def flush(stack: Stack) -> None:
    for app in (stack.gateway, stack.participant, stack.consent, stack.messaging):
        assert app.state.tracing.provider.force_flush(10_000)


async def test_a_trace_joins_the_gateways_spans_to_the_services(
    stack: Stack, collector: Collector
) -> None:
    w = await world(stack)
    flush(stack)
    collector.spans.clear()

    read = await stack.http.get(w.url, headers=await stack.as_org(w.skole))
    assert read.status_code == 200
    flush(stack)

    gateway_server = next(
        span
        for service, span in collector.spans
        if service == "broen-gateway"
        and span.kind == Span.SPAN_KIND_SERVER
        and span.name == "GET /api/v1/participants/{participant_id}"
    )
    trace = [(s, span) for s, span in collector.spans if span.trace_id == gateway_server.trace_id]
    services = {service for service, _ in trace}
    assert {"broen-gateway", "broen-participant"} <= services
    # The participant service's server span is the child of the gateway's httpx call.
    client_ids = {
        span.span_id
        for service, span in trace
        if service == "broen-gateway" and span.kind == Span.SPAN_KIND_CLIENT
    }
    # In one process the service's span is INTERNAL (a span is already current); across
    # processes it is a SERVER span joined through `traceparent` (test_make_run.py).
    participant_servers = [
        span
        for service, span in trace
        if service == "broen-participant"
        and span.name == "GET /api/v1/participants/{participant_id}"
    ]
    assert participant_servers
    assert all(span.parent_span_id in client_ids for span in participant_servers)
    # SQL spans of both, in the same trace.
    assert any(
        any(a.key == "db.system" or a.key == "db.system.name" for a in span.attributes)
        for service, span in trace
        if service == "broen-participant"
    )


async def test_nothing_shaped_like_a_national_id_leaves_in_a_span(
    stack: Stack, collector: Collector
) -> None:
    w = await world(stack)
    # A client that puts a national id where it does not belong: in the path.
    wrong = await stack.http.get(
        f"/api/v1/participants/{KARI}", headers=await stack.as_org(w.skole)
    )
    assert wrong.status_code in (404, 422)
    flush(stack)

    exported = exported_texts(collector.spans)
    assert exported
    assert not any(KARI in item or "150805 51212" in item for item in exported)
    assert any("[redacted]" in item for item in exported)
    assert not any(
        attribute.key in ("exception.message", "exception.stacktrace")
        for _, span in collector.spans
        for event in span.events
        for attribute in event.attributes
    )
