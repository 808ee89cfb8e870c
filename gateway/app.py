"""The gateway: the only public entry. Authentication, personvern, and the proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from gateway.audit import AuditKeys, AuditWriter, HeadSigner
from gateway.audit_routes import router as audit_router
from gateway.clients import ConsentClient, ParticipantClient
from gateway.consents import router as consents_router
from gateway.consents import well_known as consents_well_known
from gateway.events.ingest import EventIngest, OutboxPuller, StreamConsumer
from gateway.events.projection import Projector
from gateway.events.routes import router as events_router
from gateway.events.targets import TargetRules, webhook_client
from gateway.events.webhooks import RetryPolicy, WebhookDispatcher
from gateway.innsyn import router as innsyn_router
from gateway.messages import BirthDates
from gateway.messages import router as messages_router
from gateway.oauth import AuthRuntime
from gateway.oauth import router as oauth_router
from gateway.participants import router as participants_router
from gateway.personvern import Personvern
from gateway.policy import ConsentSource, load_policy
from gateway.ratelimit import RateLimits
from gateway.settings import GatewaySettings
from gateway.statistics import router as statistics_router
from shared.app import BodyLimits, install_common
from shared.clients import Upstream
from shared.crypto import Keyring
from shared.db import make_engine, make_sessionmaker
from shared.internal_auth import InternalTokenSigner
from shared.jetstream import JetStream
from shared.keys import load_internal_signing_key
from shared.settings import ensure_dev_mode_is_safe
from shared.telemetry import Tracing

COMPONENT = "gateway"


def create_app(
    settings: GatewaySettings,
    *,
    upstream_transports: dict[str, httpx.AsyncBaseTransport] | None = None,
    consents: ConsentSource | None = None,
) -> FastAPI:
    """`upstream_transports` lets tests put the services in-process behind the gateway;
    `consents` replaces the consent service as the source the decisions read."""
    ensure_dev_mode_is_safe(settings)
    transports = upstream_transports or {}
    # Keys and the policy load now: a missing key or an invalid policy stops the start
    # with a message naming the file.
    auth = AuthRuntime.load(settings)
    signer = InternalTokenSigner(COMPONENT, load_internal_signing_key(settings.keys_dir, COMPONENT))
    policy = load_policy(settings.policy_path)
    audit_keys = AuditKeys.load(settings.keys_dir)
    keyring = Keyring.load(settings.keys_dir, COMPONENT)
    rate_limits = RateLimits(settings.rate_limit, settings.redis_url)
    webhook_rules = TargetRules(tuple(settings.webhook_allowed_networks), dev=settings.is_dev)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
        app.state.sessionmaker = make_sessionmaker(app.state.engine)
        tracing: Tracing | None = app.state.tracing
        if tracing is not None:
            tracing.instrument_engine(app.state.engine)
        app.state.auth = auth
        app.state.audit_keys = audit_keys
        audit_writer = AuditWriter(app.state.sessionmaker)
        head_signer = HeadSigner(
            app.state.sessionmaker,
            audit_keys,
            settings.audit_head_file,
            interval_seconds=settings.audit_head_interval_seconds,
        )

        def upstream(name: str, url: str) -> Upstream:
            return Upstream(
                name,
                url,
                signer,
                timeout_seconds=settings.upstream_timeout_seconds,
                connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
                transport=transports.get(name),
                tracing=tracing,
            )

        participant = upstream("participant", settings.participant_url)
        app.state.participant_client = ParticipantClient(participant)
        consent = upstream("consent", settings.consent_url)
        app.state.consent_client = ConsentClient(consent)
        messaging = upstream("messaging", settings.messaging_url)
        app.state.messaging = messaging
        app.state.birth_dates = BirthDates()
        app.state.personvern = Personvern(
            policy, consents or app.state.consent_client, audit_writer
        )
        app.state.keyring = keyring
        app.state.rate_limits = rate_limits
        app.state.webhook_rules = webhook_rules
        app.state.projector = Projector(app.state.personvern, app.state.participant_client)
        await audit_writer.start()
        await head_signer.start()
        jetstream: JetStream | None = None
        ingest: EventIngest | None = None
        dispatcher: WebhookDispatcher | None = None
        try:
            if settings.nats_url:
                jetstream = await JetStream.connect(settings.nats_url, settings.nats_stream)
                ingest = StreamConsumer(
                    app.state.sessionmaker,
                    jetstream,
                    interval_seconds=settings.events_interval_seconds,
                )
            else:
                ingest = OutboxPuller(
                    app.state.sessionmaker,
                    [participant, consent, messaging],
                    interval_seconds=settings.events_interval_seconds,
                )
            ingest.start()
            dispatcher = WebhookDispatcher(
                app.state.sessionmaker,
                app.state.projector,
                keyring,
                webhook_client(webhook_rules, timeout_seconds=settings.webhook_timeout_seconds),
                RetryPolicy(
                    base_seconds=settings.webhook_retry_base_seconds,
                    max_seconds=settings.webhook_retry_max_seconds,
                    window_seconds=settings.webhook_retry_window_seconds,
                    lease_seconds=settings.webhook_timeout_seconds * 3 + 30,
                ),
                concurrency=settings.webhook_concurrency,
                interval_seconds=settings.events_interval_seconds,
            )
            dispatcher.start()
            app.state.ingest = ingest
            app.state.dispatcher = dispatcher
            app.state.jetstream = jetstream
            yield
        finally:
            if dispatcher is not None:
                await dispatcher.aclose()
            if ingest is not None:
                await ingest.aclose()
            if jetstream is not None:
                await jetstream.aclose()
            await participant.aclose()
            await consent.aclose()
            await messaging.aclose()
            # Queued entries are written, then the last head signed and exported.
            await audit_writer.aclose()
            await head_signer.aclose()
            rate_limits.close()
            await app.state.engine.dispose()
            if tracing is not None:
                tracing.shutdown()

    app = FastAPI(
        title="Broen",
        version="1",
        description="Consent-gated, audited information sharing between the agencies "
        "that follow up the same person.",
        lifespan=lifespan,
    )
    install_common(app, COMPONENT, settings)
    app.add_middleware(
        BodyLimits,
        max_bytes=settings.max_body_bytes,
        timeout_seconds=settings.body_timeout_seconds,
    )
    app.include_router(oauth_router)
    app.include_router(participants_router)
    app.include_router(audit_router)
    app.include_router(innsyn_router)
    app.include_router(consents_router)
    app.include_router(consents_well_known)
    app.include_router(messages_router)
    app.include_router(events_router)
    app.include_router(statistics_router)
    return app
