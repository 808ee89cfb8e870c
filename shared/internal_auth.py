"""Internal service tokens.

Every call behind the gateway carries a short-lived JWT signed by the calling
component with its own Ed25519 key, for the target service's audience, holding
the caller's context. Services verify it against the internal key set and
refuse anything else: a service port reached directly gives nothing.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import Depends, Request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey
from joserfc.jwt import JWTClaimsRegistry
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.problems import Unauthorized

ALGORITHM = "Ed25519"
LIFETIME_SECONDS = 60
# A signed token is reused for the same caller and audience while it has this much life left.
REUSE_MARGIN_SECONDS = 30
LEEWAY_SECONDS = 5
HEADER = "Broen-Internal-Token"


class CallerContext(BaseModel):
    """Who the request is for, as established by the gateway's authentication."""

    model_config = ConfigDict(frozen=True)

    kind: str  # "system", "staff" or "citizen"; "service" for service-to-service calls
    client_id: str | None = None
    orgnr: str | None = None
    agency_type: str | None = None
    scopes: tuple[str, ...] = ()
    staff_id: str | None = None
    unit_id: str | None = None
    roles: tuple[str, ...] = ()
    participant_id: str | None = None
    # Citizens only: acting as the participant themselves, or as their guardian.
    acting_as: str | None = None
    # Staff only: the directory's explicit authorisation to see `skjermet` participants.
    skjermet_authorised: bool = False


class InternalTokenSigner:
    def __init__(self, issuer: str, key: OKPKey) -> None:
        self.issuer = issuer
        self._key = key
        self._cache: dict[tuple[str, CallerContext], tuple[str, float]] = {}

    def token_for(self, audience: str, caller: CallerContext) -> str:
        now = time.time()
        cached = self._cache.get((audience, caller))
        if cached and cached[1] - now > REUSE_MARGIN_SECONDS:
            return cached[0]
        expires = now + LIFETIME_SECONDS
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "iat": int(now),
            "exp": int(expires),
            "jti": str(uuid.uuid4()),
            "ctx": caller.model_dump(mode="json", exclude_none=True),
        }
        header = {"alg": ALGORITHM, "kid": self._key.kid, "typ": "broen-internal+jwt"}
        token = jwt.encode(header, claims, self._key, algorithms=[ALGORITHM])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(audience, caller)] = (token, expires)
        return token


class VerifiedTokens:
    """Tokens already verified, until they expire: a client reusing its token pays for the
    signature check once. Bounded; the oldest entries go first."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max_entries = max_entries
        self._entries: dict[str, tuple[CallerContext, float]] = {}

    def get(self, token: str) -> CallerContext | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if entry[1] <= time.time():
            del self._entries[token]
            return None
        return entry[0]

    def put(self, token: str, caller: CallerContext, expires_at: float) -> None:
        if len(self._entries) >= self._max_entries:
            for stale in list(self._entries)[: self._max_entries // 10]:
                del self._entries[stale]
        self._entries[token] = (caller, expires_at)


class InternalTokenVerifier:
    def __init__(self, audience: str, key_set: KeySet, trusted_issuers: set[str]) -> None:
        self.audience = audience
        self._key_set = key_set
        self._claims = JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            iss={"essential": True, "values": sorted(trusted_issuers)},
        )
        self._verified = VerifiedTokens()

    def verify(self, token: str) -> CallerContext:
        cached = self._verified.get(token)
        if cached is not None:
            return cached
        try:
            decoded = jwt.decode(token, self._key_set, algorithms=[ALGORITHM])
            self._claims.validate(decoded.claims)
            caller = CallerContext.model_validate(decoded.claims.get("ctx"))
        except (JoseError, ValueError, ValidationError):
            raise Unauthorized("A valid internal service token is required.") from None
        self._verified.put(token, caller, float(decoded.claims["exp"]))
        return caller


async def require_internal_caller(request: Request) -> CallerContext:
    """Dependency for every service route: the verified caller, or a 401 problem."""
    token = request.headers.get(HEADER)
    if not token:
        raise Unauthorized("A valid internal service token is required.")
    verifier: InternalTokenVerifier = request.app.state.internal_verifier
    caller = verifier.verify(token)
    request.state.caller = caller
    return caller


CallerDep = Annotated[CallerContext, Depends(require_internal_caller)]


def internal_headers(
    signer: InternalTokenSigner, audience: str, caller: CallerContext
) -> dict[str, Any]:
    return {HEADER: signer.token_for(audience, caller)}
