"""The OAuth2 authorization server: `POST /oauth/token` and the `/.well-known` documents.

Systems get access tokens with the client_credentials grant and authenticate with
`private_key_jwt` (RFC 7523), as with Maskinporten. A system acting for a staff member
uses the JWT-bearer grant (RFC 7523 §2.1) and still authenticates with `private_key_jwt`:
its assertion names the staff member, who must belong to the client's organisation.
authlib's generic server runs the grants and the assertion checks; its hooks are
synchronous, so a token request runs authlib in a worker thread whose hooks reach the
request's async session and the staff directory through `anyio.from_thread`.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol
from urllib.parse import parse_qsl

import anyio.from_thread
import anyio.to_thread
from authlib.common.security import is_secure_transport
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Request,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import BaseGrant, ClientCredentialsGrant, TokenEndpointMixin
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion, JWTBearerGrant
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet, RSAKey, import_key
from joserfc.jws import JWSRegistry, extract_compact
from joserfc.jwt import JWTClaimsRegistry
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from gateway import store
from gateway.citizens import CitizenIssuers, UntrustedCitizenToken
from gateway.models import OAuthClient
from gateway.settings import GatewaySettings
from gateway.tokens import AccessTokens, load_token_keys
from services.participant.schemas import CitizenIdentity, StaffRead
from shared.db import SessionDep, make_engine, make_sessionmaker
from shared.internal_auth import CallerContext
from shared.problems import (
    Conflict,
    Problem,
    ServiceUnavailable,
    ValidationProblem,
    problem_responses,
)
from shared.settings import ConfigurationError

SCOPES = (
    "participants:read",
    "participants:write",
    "events:write",
    "consents:read",
    "consents:write",
    "messages",
    "subscriptions",
    "audit:read",
    "admin",
)
# `admin` belongs to the platform operator, never to an organisation's client.
ORGANISATION_SCOPES = tuple(scope for scope in SCOPES if scope != "admin")
AUTH_METHOD = "private_key_jwt"
GRANT_TYPE = "client_credentials"
JWT_BEARER_GRANT_TYPE = JWTBearerGrant.GRANT_TYPE
# RFC 8693: a citizen's ID token from a trusted identity provider for a Broen citizen token.
TOKEN_EXCHANGE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
SUBJECT_TOKEN_TYPES = (
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:jwt",
)
GRANT_TYPES = (GRANT_TYPE, JWT_BEARER_GRANT_TYPE, TOKEN_EXCHANGE_GRANT_TYPE)
ASSERTION_TYPE = JWTBearerClientAssertion.CLIENT_ASSERTION_TYPE
ASSERTION_ALGORITHMS = ("RS256", "PS256", "ES256", "Ed25519", "EdDSA")
ASSERTION_MAX_AHEAD_SECONDS = 120
ASSERTION_LEEWAY_SECONDS = 10
MAX_FORM_BYTES = 16_384
MAX_JTI_LENGTH = 200
MAX_CLIENT_KEYS = 10

_KEY_ALGORITHMS = {"RSA": {"RS256", "PS256"}, "EC": {"ES256"}, "OKP": {"Ed25519", "EdDSA"}}
_PUBLIC_MEMBERS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "OKP": ("crv", "x")}
_CURVES = {"EC": "P-256", "OKP": "Ed25519"}
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
_ORGNR = re.compile(r"\d{9}")
_AGENCY_TYPE = re.compile(r"[A-Za-z0-9_-]{1,50}")
_FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"

router = APIRouter(tags=["oauth"])


# --- the client registry ---------------------------------------------------------------


class InvalidClientRegistration(ValidationProblem):
    type = "invalid-client-registration"
    title = "The client registration is not valid"


class ClientAlreadyRegistered(Conflict):
    type = "client-already-registered"
    title = "A client with this id is already registered"


@dataclass(frozen=True, eq=False)
class ClientRecord(ClientMixin):  # type: ignore[misc]
    """A registered client as authlib sees it: private_key_jwt and client_credentials only."""

    client_id: str
    orgnr: str
    agency_type: str
    scopes: tuple[str, ...]
    jwks: dict[str, Any]

    @classmethod
    def from_row(cls, row: OAuthClient) -> ClientRecord:
        return cls(row.client_id, row.orgnr, row.agency_type, tuple(row.scopes.split()), row.jwks)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(self.granted_scopes(scope))

    def granted_scopes(self, requested: str | None) -> tuple[str, ...]:
        """The scopes to grant: those requested that are allowed, or all allowed by default."""
        if not requested:
            return self.scopes
        return tuple(scope for scope in self.scopes if scope in requested.split())

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == AUTH_METHOD and endpoint == "token"

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in GRANT_TYPES


def validate_client_jwks(jwks: Any) -> dict[str, Any]:
    """The client's JWKS reduced to public members, or InvalidClientRegistration."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidClientRegistration("The JWKS must be an object with a non-empty 'keys' list.")
    if len(jwks["keys"]) > MAX_CLIENT_KEYS:
        raise InvalidClientRegistration(f"A client may register at most {MAX_CLIENT_KEYS} keys.")
    keys = [_validate_client_key(key) for key in jwks["keys"]]
    if len({key["kid"] for key in keys}) != len(keys):
        raise InvalidClientRegistration("Every key in the JWKS needs its own kid.")
    return {"keys": keys}


def _validate_client_key(key: Any) -> dict[str, Any]:
    if not isinstance(key, dict):
        raise InvalidClientRegistration("Every key in the JWKS must be a JSON object.")
    kid, kty, alg = key.get("kid"), key.get("kty"), key.get("alg")
    if not isinstance(kid, str) or not 0 < len(kid) <= 100:
        raise InvalidClientRegistration("Every key needs a kid of at most 100 characters.")
    if kty not in _KEY_ALGORITHMS:
        raise InvalidClientRegistration(f"Key {kid}: kty must be one of RSA, EC, OKP.")
    if {"d", "p", "q", "dp", "dq", "qi", "oth", "k"} & key.keys():
        raise InvalidClientRegistration(
            f"Key {kid} holds private key material; register public keys only."
        )
    if alg is not None and alg not in _KEY_ALGORITHMS[kty]:
        allowed = ", ".join(sorted(_KEY_ALGORITHMS[kty]))
        raise InvalidClientRegistration(f"Key {kid}: alg must be one of {allowed} for kty {kty}.")
    if key.get("use", "sig") != "sig":
        raise InvalidClientRegistration(f"Key {kid}: use must be 'sig'.")
    if kty in _CURVES and key.get("crv") != _CURVES[kty]:
        raise InvalidClientRegistration(f"Key {kid}: crv must be {_CURVES[kty]}.")
    public = {"kty": kty, "kid": kid, "use": "sig", **{m: key.get(m) for m in _PUBLIC_MEMBERS[kty]}}
    if alg is not None:
        public["alg"] = alg
    try:
        imported = import_key(public)
    except (JoseError, ValueError, TypeError):
        raise InvalidClientRegistration(f"Key {kid} is not a valid {kty} public key.") from None
    if isinstance(imported, RSAKey) and imported.get_op_key("verify").key_size < 2048:
        raise InvalidClientRegistration(f"Key {kid}: RSA keys must be at least 2048 bits.")
    return public


def validate_registration(
    *, client_id: str, orgnr: str, agency_type: str, scopes: str | Sequence[str]
) -> tuple[str, ...]:
    """Check a registration's fields; returns the scopes as a tuple."""
    if not _CLIENT_ID.fullmatch(client_id):
        raise InvalidClientRegistration(
            "The client id must be 1-100 characters: letters, digits and . _ : -"
        )
    if not _ORGNR.fullmatch(orgnr):
        raise InvalidClientRegistration("The organisation number must be nine digits.")
    if not _AGENCY_TYPE.fullmatch(agency_type):
        raise InvalidClientRegistration("The agency type must be 1-50 letters, digits, _ or -.")
    listed = tuple(scopes.split() if isinstance(scopes, str) else scopes)
    if "admin" in listed:
        raise InvalidClientRegistration(
            "The admin scope belongs to the platform operator and is never granted to a client."
        )
    unknown = sorted(set(listed) - set(ORGANISATION_SCOPES))
    if unknown:
        raise InvalidClientRegistration(f"Unknown scopes: {', '.join(unknown)}.")
    if not listed:
        raise InvalidClientRegistration("A client needs at least one scope.")
    return tuple(dict.fromkeys(listed))


def describe_client(client: OAuthClient) -> dict[str, Any]:
    """A registered client as the CLI and admin routes show it (public keys by kid only)."""
    return {
        "client_id": client.client_id,
        "orgnr": client.orgnr,
        "agency_type": client.agency_type,
        "scopes": client.scopes.split(),
        "kids": [key["kid"] for key in client.jwks["keys"]],
        "created_at": client.created_at.isoformat(),
    }


async def create_client(
    session: AsyncSession,
    *,
    client_id: str,
    orgnr: str,
    agency_type: str,
    scopes: str | Sequence[str],
    jwks: Any,
) -> OAuthClient:
    """Validate and add a client in the caller's transaction."""
    granted = validate_registration(
        client_id=client_id, orgnr=orgnr, agency_type=agency_type, scopes=scopes
    )
    public_jwks = validate_client_jwks(jwks)
    if await store.get_client(session, client_id=client_id) is not None:
        raise ClientAlreadyRegistered(f"The client id '{client_id}' is already registered.")
    return await store.add_client(
        session,
        client_id=client_id,
        orgnr=orgnr,
        agency_type=agency_type,
        scopes=granted,
        jwks=public_jwks,
        created_at=datetime.now(UTC),
    )


async def register_client(
    settings: GatewaySettings,
    *,
    client_id: str,
    orgnr: str,
    agency_type: str,
    scopes: str | Sequence[str],
    jwks: Any,
) -> dict[str, Any]:
    """Register a client in the gateway's database, outside any request (the CLI)."""
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            client = await create_client(
                session,
                client_id=client_id,
                orgnr=orgnr,
                agency_type=agency_type,
                scopes=scopes,
                jwks=jwks,
            )
            return describe_client(client)
    finally:
        await engine.dispose()


# --- authlib, adapted --------------------------------------------------------------------


class StaffDirectory(Protocol):
    """Where the token endpoint reads staff members and identifies citizens: the gateway's
    participant client."""

    async def read_staff(self, caller: CallerContext, staff_id: uuid.UUID) -> StaffRead | None: ...

    async def identify(self, national_id: str) -> CitizenIdentity: ...


class _DatabaseBridge:
    """authlib's synchronous hooks, run in a worker thread, reach the async session (and the
    staff directory) here."""

    def __init__(self, session: AsyncSession, directory: StaffDirectory | None = None) -> None:
        self._session = session
        self._directory = directory

    def get_client(self, client_id: str) -> ClientRecord | None:
        row = anyio.from_thread.run(partial(store.get_client, self._session, client_id=client_id))
        return ClientRecord.from_row(row) if row is not None else None

    def remember_jti(self, *, client_id: str, jti: str, expires_at: datetime) -> bool:
        remember = partial(
            store.remember_jti, self._session, client_id=client_id, jti=jti, expires_at=expires_at
        )
        return anyio.from_thread.run(remember)

    def read_staff(self, client: ClientRecord, staff_id: uuid.UUID) -> StaffRead | None:
        """The directory's staff member, None if unknown; a 503 problem if it cannot answer."""
        if self._directory is None:
            raise ServiceUnavailable("The staff directory is not available; try again shortly.")
        # The gateway reads on the client's behalf; the internal token names the client.
        caller = CallerContext(
            kind="system",
            client_id=client.client_id,
            orgnr=client.orgnr,
            agency_type=client.agency_type,
        )
        try:
            return anyio.from_thread.run(partial(self._directory.read_staff, caller, staff_id))
        except ServiceUnavailable:
            raise
        except (Problem, ValueError):
            # Any other answer (a 4xx besides 404, a body out of contract) is the directory's
            # fault, not the client's: the same 503, and nothing about the staff member.
            raise ServiceUnavailable(
                "The staff directory could not answer; try again shortly."
            ) from None

    def identify(self, national_id: str) -> CitizenIdentity:
        """Who the citizen is to Broen; a 503 problem if the directory cannot answer."""
        if self._directory is None:
            raise ServiceUnavailable("The participant directory is not available; try again.")
        try:
            return anyio.from_thread.run(partial(self._directory.identify, national_id))
        except ServiceUnavailable:
            raise
        except (Problem, ValueError):
            raise ServiceUnavailable(
                "The participant directory could not answer; try again shortly."
            ) from None


class _AssertionRegistry(JWSRegistry):
    """Accepts the alg name "EdDSA" without joserfc's warning: RFC 9864 deprecates the
    name, not the Ed25519 signature, and most client libraries still write it."""

    def get_alg(self, name: str) -> Any:
        if name == "EdDSA" and name in (self.allowed or ()):
            return self.algorithms[name]
        return super().get_alg(name)


class _PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client authentication with our limits: algorithms, 120 s, jti once."""

    CLIENT_AUTH_METHOD = AUTH_METHOD

    def __init__(self, audiences: list[str], bridge: _DatabaseBridge) -> None:
        super().__init__(validate_jti=True, leeway=ASSERTION_LEEWAY_SECONDS)
        self._audiences = audiences
        self._bridge = bridge

    def get_audiences(self) -> list[str]:
        return self._audiences

    def resolve_client_public_key(self, client: ClientRecord) -> KeySet:
        return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]  # validated at registration

    def process_assertion_claims(self, assertion: str, resolve_key: Key | KeySet) -> Any:
        claims = _decode_assertion(assertion, resolve_key)
        if claims is None:
            raise InvalidClientError(
                description="The client assertion's signature, key or algorithm is not accepted."
            )
        self.verify_claims(claims)
        return claims

    def verify_claims(self, claims: Any) -> None:
        problem = _assertion_limits_problem(claims, "client assertion")
        if problem is not None:
            raise InvalidClientError(description=problem)
        super().verify_claims(claims)

    def validate_jti(self, claims: Any, jti: str) -> bool:
        return self._bridge.remember_jti(
            client_id=claims["sub"], jti=jti, expires_at=_jti_expiry(claims)
        )


def _decode_assertion(assertion: str, key: Key | KeySet) -> dict[str, Any] | None:
    """The claims of an assertion signed by `key` with an accepted algorithm, else None."""
    try:
        token = jwt.decode(
            assertion,
            key,
            algorithms=ASSERTION_ALGORITHMS,
            registry=_AssertionRegistry(algorithms=ASSERTION_ALGORITHMS),
        )
    except (JoseError, ValueError, TypeError):
        return None
    return dict(token.claims)


def _assertion_limits_problem(claims: dict[str, Any], name: str) -> str | None:
    """What breaks our limits on any assertion (120 s at most, a jti), or None."""
    exp = claims.get("exp")
    latest = time.time() + ASSERTION_MAX_AHEAD_SECONDS + ASSERTION_LEEWAY_SECONDS
    if isinstance(exp, int | float) and exp > latest:
        return f"The {name} must expire within {ASSERTION_MAX_AHEAD_SECONDS} seconds."
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        return f"The {name} needs a jti of at most {MAX_JTI_LENGTH} characters."
    return None


def _jti_expiry(claims: dict[str, Any]) -> datetime:
    # Kept until the assertion could no longer pass the exp check anyway.
    return datetime.fromtimestamp(claims["exp"] + ASSERTION_LEEWAY_SECONDS, UTC)


class _ScopeWithinClient:
    """Scopes as for every grant here: a subset of the client's allowed scopes."""

    request: OAuth2Request
    client: ClientRecord

    def validate_requested_scope(self) -> None:
        super().validate_requested_scope()  # type: ignore[misc]
        requested = self.request.payload.scope
        if requested and not set(requested.split()) <= set(self.client.scopes):
            raise InvalidScopeError(
                description="The requested scope is not among the client's allowed scopes."
            )


class _ClientCredentialsGrant(_ScopeWithinClient, ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = [AUTH_METHOD]


class _StaffGrant(_ScopeWithinClient, JWTBearerGrant):  # type: ignore[misc]
    """RFC 7523 §2.1 for a staff member: unlike authlib's JWTBearerGrant, the client must
    also authenticate (private_key_jwt), and the assertion must be its own: iss is the
    client, sub a staff member of the client's organisation, signed by a client key."""

    TOKEN_ENDPOINT_AUTH_METHODS = [AUTH_METHOD]
    LEEWAY = ASSERTION_LEEWAY_SECONDS
    _NOT_STAFF = "The assertion's subject is not a staff member of the client's organisation."

    def validate_token_request(self) -> None:
        client: ClientRecord = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(
                f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'"
            )
        self.request.client = client
        assertion = self.request.form.get("assertion")
        if not assertion:
            raise InvalidRequestError("The request needs an 'assertion' (a JWT naming the staff).")
        claims = self._verified_claims(assertion, client)
        self.validate_requested_scope()
        staff_id = _canonical_uuid(claims["sub"])
        if staff_id is None:
            raise InvalidGrantError(description="The assertion's subject must be a staff id.")
        bridge: _DatabaseBridge = self.server.bridge
        if not bridge.remember_jti(
            client_id=client.client_id, jti=claims["jti"], expires_at=_jti_expiry(claims)
        ):
            raise InvalidGrantError(description="The assertion has been used before.")
        staff = bridge.read_staff(client, staff_id)
        # Unknown, and known to another organisation, are one answer: no directory oracle.
        if staff is None or staff.orgnr != client.orgnr or not staff.roles:
            raise InvalidGrantError(description=self._NOT_STAFF)
        self.request.user = staff

    def _verified_claims(self, assertion: str, client: ClientRecord) -> dict[str, Any]:
        keys = KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]  # validated at registration
        claims = _decode_assertion(assertion, keys)
        if claims is None:
            raise InvalidGrantError(
                description="The assertion's signature, key or algorithm is not accepted."
            )
        problem = _assertion_limits_problem(claims, "assertion")
        if problem is not None:
            raise InvalidGrantError(description=problem)
        registry = JWTClaimsRegistry(
            leeway=self.LEEWAY,
            iss={"essential": True, "value": client.client_id},
            sub={"essential": True},
            aud={"essential": True, "values": self.server.assertion_audiences},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise InvalidGrantError(description=error.description) from None
        return claims


class _CitizenGrant(BaseGrant, TokenEndpointMixin):  # type: ignore[misc]
    """RFC 8693 token exchange: a registered client (the citizen-facing app) presents the
    citizen's ID token from a trusted identity provider and gets a Broen citizen token for
    the participant, or with `acting_for` for a minor the person is guardian of."""

    GRANT_TYPE = TOKEN_EXCHANGE_GRANT_TYPE
    TOKEN_ENDPOINT_AUTH_METHODS = [AUTH_METHOD]
    _NO_PARTICIPANT = "The person is not a participant in Broen, nor guardian of the one named."

    def validate_token_request(self) -> None:
        client: ClientRecord = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(
                f"The client is not authorized to use 'grant_type={self.GRANT_TYPE}'"
            )
        self.request.client = client
        form = self.request.form
        token = form.get("subject_token")
        if not token or form.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
            raise InvalidRequestError(
                "The request needs a 'subject_token' (the citizen's ID token) and a "
                f"'subject_token_type' of {' or '.join(SUBJECT_TOKEN_TYPES)}."
            )
        issuers: CitizenIssuers = self.server.citizen_issuers
        try:
            national_id = issuers.national_id(token)
        except UntrustedCitizenToken as error:
            raise InvalidGrantError(description=str(error)) from None
        identity = self.server.bridge.identify(national_id)
        acting_for = form.get("acting_for")
        if acting_for is None:
            if identity.participant_id is None:
                raise InvalidGrantError(description=self._NO_PARTICIPANT)
            self.request.user = ("participant", identity.participant_id, None)
            return
        ward = _canonical_uuid(acting_for)
        if ward is None or ward not in identity.wards:
            raise InvalidGrantError(description=self._NO_PARTICIPANT)
        self.request.user = ("guardian", ward, identity.pseudonym)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.generate_token(user=self.request.user, scope=None, include_refresh_token=False)
        token["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
        return 200, token, self.TOKEN_RESPONSE_HEADER


def _canonical_uuid(value: Any) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return parsed if str(parsed) == value.lower() else None


class _FormRequest(OAuth2Request):  # type: ignore[misc]
    """A token request as authlib reads it: the parsed form, at the configured endpoint URL."""

    def __init__(self, uri: str, form: dict[str, str]) -> None:
        super().__init__("POST", uri)
        self.payload = BasicOAuth2Payload(form)
        self._form = form

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _TokenServer(AuthorizationServer):  # type: ignore[misc]
    """One per token request, so the hooks see that request's database session."""

    def __init__(self, runtime: AuthRuntime, bridge: _DatabaseBridge) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self._tokens = runtime.tokens
        self.bridge = bridge
        self.assertion_audiences = runtime.assertion_audiences
        self.citizen_issuers = runtime.citizen_issuers
        self.register_grant(_ClientCredentialsGrant)
        self.register_grant(_StaffGrant)
        if runtime.citizen_issuers:
            self.register_grant(_CitizenGrant)
            self.register_token_generator(TOKEN_EXCHANGE_GRANT_TYPE, self._generate_citizen_token)
        self.register_client_auth_method(
            AUTH_METHOD, _PrivateKeyJWT(runtime.assertion_audiences, bridge)
        )
        self.register_token_generator(GRANT_TYPE, self._generate_token)
        self.register_token_generator(JWT_BEARER_GRANT_TYPE, self._generate_staff_token)

    def query_client(self, client_id: str) -> ClientRecord | None:
        if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
            return None
        return self.bridge.get_client(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Nothing to store: access tokens are self-contained, short-lived JWTs."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal listeners."""

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        return status, body, headers

    def _generate_token(
        self, *, client: ClientRecord, scope: str | None, **_: Any
    ) -> dict[str, Any]:
        return self._tokens.issue_system_token(
            client_id=client.client_id,
            orgnr=client.orgnr,
            agency_type=client.agency_type,
            scopes=client.granted_scopes(scope),
        )

    def _generate_citizen_token(
        self, *, user: tuple[str, uuid.UUID, str | None], **_: Any
    ) -> dict[str, Any]:
        acting_as, participant_id, pseudonym = user
        return self._tokens.issue_citizen_token(
            participant_id=participant_id, acting_as=acting_as, guardian=pseudonym
        )

    def _generate_staff_token(
        self, *, client: ClientRecord, scope: str | None, user: StaffRead, **_: Any
    ) -> dict[str, Any]:
        return self._tokens.issue_staff_token(
            client_id=client.client_id,
            agency_type=client.agency_type,
            staff=user,
            scopes=client.granted_scopes(scope),
        )


# --- the runtime object and the routes ---------------------------------------------------


class AuthConfigError(ConfigurationError):
    """The gateway's authorization settings cannot work; raised at start."""


@dataclass(frozen=True)
class AuthRuntime:
    """The gateway's authorization server state: issuer, token keys. Built once in lifespan."""

    issuer: str
    tokens: AccessTokens
    citizen_issuers: CitizenIssuers = field(default_factory=lambda: CitizenIssuers(()))

    @classmethod
    def load(cls, settings: GatewaySettings) -> AuthRuntime:
        """Read the token-signing keys from settings.keys_dir; raises if missing or unusable."""
        # authlib logs issued token responses at DEBUG; tokens must never reach a log.
        logging.getLogger("authlib").setLevel(logging.INFO)
        issuer = settings.issuer.rstrip("/")
        if not is_secure_transport(issuer + "/oauth/token"):
            raise AuthConfigError(
                f"the issuer {issuer} must be an https URL (plain http only on loopback)"
            )
        try:
            tokens = AccessTokens(
                load_token_keys(settings.keys_dir),
                issuer=issuer,
                lifetime_seconds=settings.access_token_lifetime_seconds,
            )
        except ValueError as exc:
            raise AuthConfigError(str(exc)) from None
        return cls(
            issuer=issuer, tokens=tokens, citizen_issuers=CitizenIssuers(settings.citizen_issuers)
        )

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/oauth/token"

    @property
    def assertion_audiences(self) -> list[str]:
        return [self.issuer, self.token_endpoint]

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata."""
        return {
            "issuer": self.issuer,
            "token_endpoint": self.token_endpoint,
            "jwks_uri": self.issuer + "/.well-known/jwks.json",
            "grant_types_supported": [
                g for g in GRANT_TYPES if g != TOKEN_EXCHANGE_GRANT_TYPE or self.citizen_issuers
            ],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": [AUTH_METHOD],
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "scopes_supported": list(SCOPES),
        }

    def token_response(
        self, form: dict[str, str], bridge: _DatabaseBridge
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Run authlib on one token request (blocking: call it in a worker thread)."""
        server = _TokenServer(self, bridge)
        result: tuple[int, dict[str, Any], list[tuple[str, str]]]
        result = server.create_token_response(_FormRequest(self.token_endpoint, form))
        return result


class TokenResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    scope: str


class TokenError(BaseModel):
    error: str
    error_description: str | None = None


_TOKEN_FORM_SCHEMA = {
    "type": "object",
    "required": ["grant_type", "client_assertion_type", "client_assertion"],
    "properties": {
        "grant_type": {"type": "string", "enum": list(GRANT_TYPES)},
        "assertion": {
            "type": "string",
            "description": f"{JWT_BEARER_GRANT_TYPE} only: a JWT signed with one of the "
            "client's keys, iss the client id, sub the staff member's id (RFC 7523 §2.1).",
        },
        "subject_token": {
            "type": "string",
            "description": f"{TOKEN_EXCHANGE_GRANT_TYPE} only (RFC 8693): the citizen's ID "
            "token from an identity provider the gateway trusts.",
        },
        "subject_token_type": {"type": "string", "enum": list(SUBJECT_TOKEN_TYPES)},
        "acting_for": {
            "type": "string",
            "format": "uuid",
            "description": "Token exchange only: the minor's participant id, when the citizen "
            "acts as their guardian.",
        },
        "client_assertion_type": {"type": "string", "enum": [ASSERTION_TYPE]},
        "client_assertion": {
            "type": "string",
            "description": "A JWT signed with one of the client's registered keys (RFC 7523).",
        },
        "scope": {
            "type": "string",
            "description": "Space-separated scopes; default: all the client is allowed.",
        },
    },
}


@router.post(
    "/oauth/token",
    response_model=TokenResponse,
    responses={
        400: {"model": TokenError, "description": "OAuth error (RFC 6749 §5.2)"},
        **problem_responses(503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {_FORM_MEDIA_TYPE: {"schema": _TOKEN_FORM_SCHEMA}},
        }
    },
)
async def issue_token(request: Request, session: SessionDep) -> JSONResponse:
    """Issue an access token (client_credentials or JWT-bearer grant; private_key_jwt)."""
    runtime: AuthRuntime = request.app.state.auth
    try:
        form = await _read_form(request)
    except InvalidRequestError as error:
        status, body, headers = error()
        return JSONResponse(body, status_code=status, headers=dict(headers))
    claimed = _claimed_client_id(form)
    if claimed is not None:
        await request.app.state.rate_limits.check_token_request(claimed)
    await store.prune_used_jtis(session, now=datetime.now(UTC))
    directory: StaffDirectory | None = getattr(request.app.state, "participant_client", None)
    status, body, headers = await anyio.to_thread.run_sync(
        runtime.token_response, form, _DatabaseBridge(session, directory)
    )
    return JSONResponse(body, status_code=status, headers=dict(headers))


def _claimed_client_id(form: dict[str, str]) -> str | None:
    """The client a token request says it comes from (`client_id`, else the assertion's
    unverified `iss`), to count it against that client's rate limit before any signature
    is checked. Only a well-formed client id is counted."""
    claimed: Any = form.get("client_id")
    if claimed is None:
        try:
            unverified = extract_compact(form.get("client_assertion", "").encode())
            claims = json.loads(unverified.payload)
        except (JoseError, ValueError):
            return None
        claimed = claims.get("iss") if isinstance(claims, dict) else None
    return claimed if isinstance(claimed, str) and _CLIENT_ID.fullmatch(claimed) else None


async def _read_form(request: Request) -> dict[str, str]:
    """The urlencoded token request; each parameter at most once (RFC 6749 §3.2)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != _FORM_MEDIA_TYPE:
        raise InvalidRequestError(f"The token request must be {_FORM_MEDIA_TYPE}.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidRequestError("The token request is too large.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError("The token request body is not a valid form.") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise InvalidRequestError("A parameter is repeated.")
    return form


@router.get("/.well-known/oauth-authorization-server")
async def read_server_metadata(request: Request) -> dict[str, Any]:
    """Describe the authorization server (RFC 8414)."""
    runtime: AuthRuntime = request.app.state.auth
    return runtime.metadata()


@router.get("/.well-known/jwks.json")
async def read_jwks(request: Request) -> dict[str, Any]:
    """Publish the public keys that verify the gateway's access tokens."""
    runtime: AuthRuntime = request.app.state.auth
    return runtime.tokens.public_jwks()
