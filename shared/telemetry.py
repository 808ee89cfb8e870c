"""Traces (OpenTelemetry) across the gateway and the services: the FastAPI app, its httpx
clients and its SQLAlchemy engine. Off unless `BROEN_OTLP_ENDPOINT` names an OTLP/HTTP
collector; then every span passes `ScrubbingSpanProcessor` on its way out, so nothing
shaped like a national id, and no exception message or stack trace, leaves the process.

Each app gets its own tracer provider (its `service.name` is `broen-<component>`), so four
apps in one test process stay four services; the W3C `traceparent` header joins their spans
into one trace.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, Status
from sqlalchemy.ext.asyncio import AsyncEngine

# Eleven digits standing alone (a fødselsnummer or D-nummer), with or without the space
# people put after the birth date.
NATIONAL_ID_SHAPE = re.compile(r"(?<!\d)\d{6} ?\d{5}(?!\d)")
REDACTED = "[redacted]"
# Exception events keep their type only: a message or a stack trace can quote input.
DROPPED_ATTRIBUTES = frozenset({"exception.message", "exception.stacktrace"})
# Probes and scrapes are not traced.
UNTRACED_ROUTES = "healthz,readyz,metrics"


def scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return NATIONAL_ID_SHAPE.sub(REDACTED, value)
    if isinstance(value, bytes):
        return scrub_value(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return scrub_attributes(value)
    if isinstance(value, Sequence):
        return tuple(scrub_value(item) for item in value)
    return value


def scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        key: scrub_value(value)
        for key, value in (attributes or {}).items()
        if key not in DROPPED_ATTRIBUTES
    }


def scrubbed(span: ReadableSpan) -> ReadableSpan:
    """A copy of a finished span with every text scrubbed (a finished span is read-only)."""
    return ReadableSpan(
        name=scrub_value(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=scrub_attributes(span.attributes),
        events=[
            Event(scrub_value(e.name), scrub_attributes(e.attributes), e.timestamp)
            for e in span.events
        ],
        links=[Link(link.context, scrub_attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=Status(
            span.status.status_code,
            scrub_value(span.status.description) if span.status.description else None,
        ),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class ScrubbingSpanProcessor(SpanProcessor):
    """Hands the processor behind it (the exporter's) a scrubbed copy of every span."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.inner.on_end(scrubbed(span))

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class Tracing:
    """One component's tracer provider and the instrumentation of its parts."""

    def __init__(self, component: str, otlp_endpoint: str) -> None:
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": f"broen-{component}"})
        )
        exporter = OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")
        self.provider.add_span_processor(ScrubbingSpanProcessor(BatchSpanProcessor(exporter)))

    @classmethod
    def configured(cls, component: str, otlp_endpoint: str | None) -> Tracing | None:
        return cls(component, otlp_endpoint) if otlp_endpoint else None

    def instrument_app(self, app: FastAPI) -> None:
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            excluded_urls=UNTRACED_ROUTES,
            # One span per request, not one per ASGI message.
            exclude_spans=["receive", "send"],
        )

    def instrument_engine(self, engine: AsyncEngine) -> None:
        # The instrumentor itself patches create_engine for the whole process; one engine
        # with this app's provider is EngineTracer's job (what the instrumentor builds).
        meter = NoOpMeterProvider().get_meter("broen")
        EngineTracer(  # type: ignore[no-untyped-call]
            self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
            engine.sync_engine,
            meter.create_up_down_counter("db.client.connections.usage"),
        )

    def instrument_client(self, client: httpx.AsyncClient) -> None:
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.provider)

    def shutdown(self) -> None:
        """Export what is left, then stop."""
        self.provider.shutdown()
