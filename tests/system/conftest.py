"""The whole stack in-process: the gateway's upstream clients point at the services' ASGI apps."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm

from gateway.app import create_app as create_gateway
from gateway.oauth import register_client
from gateway.policy import GivenGrants
from gateway.settings import GatewaySettings
from services.consent.app import create_app as create_consent
from services.consent.settings import ConsentSettings
from services.messaging.app import create_app as create_messaging
from services.messaging.settings import MessagingSettings
from services.participant import directory
from services.participant import store as participant_store
from services.participant.app import create_app as create_participant
from services.participant.schemas import StaffCreate, StaffRead, UnitCreate, UnitRead
from services.participant.settings import ParticipantSettings

ISSUER = "https://broen.test"
ALL_PARTICIPANT_SCOPES = ["participants:read", "participants:write"]


@dataclass
class Organisation:
    orgnr: str
    agency_type: str
    client_id: str
    private_key: Any
    kid: str


@dataclass
class Stack:
    gateway: FastAPI
    participant: FastAPI
    consent: FastAPI
    http: httpx.AsyncClient
    gateway_settings: GatewaySettings
    participant_settings: ParticipantSettings
    messaging: FastAPI
    organisations: dict[str, Organisation] = field(default_factory=dict)

    async def add_organisation(
        self, orgnr: str, agency_type: str, *, scopes: list[str] | None = None
    ) -> Organisation:
        async with self.participant.state.sessionmaker.begin() as session:
            await participant_store.add_organisation(
                session,
                orgnr=orgnr,
                name=f"Org {orgnr}",
                agency_type=agency_type,
                county=None,
                now=datetime.now(UTC),
            )
        key = generate_private_key(SECP256R1())
        client_id = f"client-{orgnr}"
        kid = f"{client_id}-key"
        public_jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        public_jwk.update({"kid": kid, "alg": "ES256", "use": "sig"})
        await register_client(
            self.gateway_settings,
            client_id=client_id,
            orgnr=orgnr,
            agency_type=agency_type,
            scopes=scopes or ALL_PARTICIPANT_SCOPES,
            jwks={"keys": [public_jwk]},
        )
        organisation = Organisation(orgnr, agency_type, client_id, key, kid)
        self.organisations[orgnr] = organisation
        return organisation

    async def add_unit(
        self, organisation: Organisation, *, name: str = "Enhet", kind: str = "skole"
    ) -> UnitRead:
        async with self.participant.state.sessionmaker.begin() as session:
            data = UnitCreate(orgnr=organisation.orgnr, name=name, kind=kind)
            return await directory.add_unit(session, data)

    async def add_staff(
        self,
        organisation: Organisation,
        unit: UnitRead,
        *,
        roles: tuple[str, ...] = ("kontaktlaerer",),
        skjermet_authorised: bool = False,
    ) -> StaffRead:
        async with self.participant.state.sessionmaker.begin() as session:
            data = StaffCreate.model_validate(
                {
                    "orgnr": organisation.orgnr,
                    "unit_id": unit.id,
                    "name": "Ansatt Demo",
                    "roles": list(roles),
                    "skjermet_authorised": skjermet_authorised,
                }
            )
            return await directory.add_staff(session, data)

    def assertion(self, organisation: Organisation) -> str:
        """A client assertion signed by PyJWT: a library independent of the server's."""
        now = int(time.time())
        claims = {
            "iss": organisation.client_id,
            "sub": organisation.client_id,
            "aud": ISSUER,
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        return pyjwt.encode(
            claims, organisation.private_key, algorithm="ES256", headers={"kid": organisation.kid}
        )

    async def token(self, organisation: Organisation, scope: str | None = None) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.assertion(organisation),
        }
        if scope:
            form["scope"] = scope
        response = await self.http.post("/oauth/token", data=form)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def follow(self, organisation: Organisation, participant_id: str) -> None:
        """Give the organisation a relationship to the participant (a programme place), as
        a system needs one to see anything (API.md "Who is the caller")."""
        response = await self.http.post(
            f"/api/v1/participants/{participant_id}/programmes",
            json={"programme": "vgo", "starts_on": date.today().isoformat()},
            headers=await self.as_org(organisation),
        )
        assert response.status_code == 201, response.text

    def as_staff(
        self,
        organisation: Organisation,
        staff: StaffRead,
        purpose: str | None = "oppfolging",
        scopes: tuple[str, ...] = ("participants:read", "participants:write"),
    ) -> dict[str, str]:
        """Headers of a request by a staff member through the organisation's system (the
        token the JWT-bearer grant issues, minted directly)."""
        issued = self.gateway.state.auth.tokens.issue_staff_token(
            client_id=organisation.client_id,
            agency_type=organisation.agency_type,
            staff=staff,
            scopes=scopes,
        )
        headers = {"Authorization": f"Bearer {issued['access_token']}"}
        if purpose is not None:
            headers["Broen-Purpose"] = purpose
        return headers

    def as_citizen(self, participant_id: str) -> dict[str, str]:
        issued = self.gateway.state.auth.tokens.issue_citizen_token(
            participant_id=uuid.UUID(participant_id)
        )
        return {"Authorization": f"Bearer {issued['access_token']}"}

    async def as_org(
        self, organisation: Organisation, purpose: str | None = "oppfolging"
    ) -> dict[str, str]:
        """Headers of a request by the organisation's system, declaring `purpose`."""
        headers = {"Authorization": f"Bearer {await self.token(organisation)}"}
        if purpose is not None:
            headers["Broen-Purpose"] = purpose
        return headers


@pytest.fixture
def consents() -> GivenGrants | None:
    """Where the gateway's decisions read consents: the consent service (None), or grants a
    test gives directly (a module overrides this fixture with a GivenGrants)."""
    return None


@pytest.fixture
def gateway_overrides() -> dict[str, Any]:
    """Gateway settings a test module sets (it overrides this fixture)."""
    return {}


@pytest.fixture
def service_overrides() -> dict[str, Any]:
    """Settings every service gets from a test module (it overrides this fixture)."""
    return {}


@pytest.fixture
async def stack(
    database_url: Callable[[str], str],
    keys_dir: Path,
    tmp_path: Path,
    consents: GivenGrants | None,
    gateway_overrides: dict[str, Any],
    service_overrides: dict[str, Any],
) -> AsyncIterator[Stack]:
    participant_settings = ParticipantSettings(
        database_url=database_url("participant"), keys_dir=keys_dir, **service_overrides
    )
    gateway_settings = GatewaySettings(
        database_url=database_url("gateway"),
        keys_dir=keys_dir,
        issuer=ISSUER,
        participant_url="http://participant.internal",
        consent_url="http://consent.internal",
        messaging_url="http://messaging.internal",
        audit_head_file=tmp_path / "audit-head.json",
        **gateway_overrides,
    )
    participant = create_participant(participant_settings)
    consent = create_consent(
        ConsentSettings(
            database_url=database_url("consent"), keys_dir=keys_dir, **service_overrides
        )
    )
    messaging = create_messaging(
        MessagingSettings(
            database_url=database_url("messaging"),
            keys_dir=keys_dir,
            participant_url="http://participant.internal",
            **service_overrides,
        ),
        participant_transport=httpx.ASGITransport(app=participant),
    )
    gateway = create_gateway(
        gateway_settings,
        upstream_transports={
            "participant": httpx.ASGITransport(app=participant),
            "consent": httpx.ASGITransport(app=consent),
            "messaging": httpx.ASGITransport(app=messaging),
        },
        consents=consents,
    )
    async with AsyncExitStack() as stack_:
        await stack_.enter_async_context(participant.router.lifespan_context(participant))
        await stack_.enter_async_context(consent.router.lifespan_context(consent))
        await stack_.enter_async_context(messaging.router.lifespan_context(messaging))
        await stack_.enter_async_context(gateway.router.lifespan_context(gateway))
        http = await stack_.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url=ISSUER)
        )
        yield Stack(
            gateway,
            participant,
            consent,
            http,
            gateway_settings,
            participant_settings,
            messaging,
        )
