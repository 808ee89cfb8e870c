"""Access tokens: JWTs the gateway signs with its token-signing key and verifies on every call.

The key set lives in `<keys_dir>/token-signing.jwks.json`: private Ed25519 keys with
validity periods like the audit keys (shared/signing.py), the last one whose `not_before`
has come signs, every one verifies and is published at /.well-known/jwks.json. A rotation
(`broen admin keys rotate token-signing`) appends a key that signs from a moment a little
ahead and retires the old one just after; the running gateway follows the file, so tokens
signed by either verify on every replica. A retired key vouches for no token issued after
it retired, and `broen admin keys prune token-signing` drops it once every token it signed
has expired (PRUNE_AFTER past its retirement).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey
from joserfc.jwt import JWTClaimsRegistry
from pydantic import ValidationError

from services.participant.schemas import StaffRead
from shared.internal_auth import CallerContext, VerifiedTokens
from shared.keys import TOKEN_SIGNING_JWKS
from shared.problems import Unauthorized
from shared.signing import SINCE_EVER, SigningKeyError, ValidityKey, ValidityKeys
from shared.vocabulary import ROLES

ALGORITHM = "Ed25519"
# RFC 9068: a distinct type, so no other JWT signed by the gateway passes as an access token.
TOKEN_TYPE = "at+jwt"  # noqa: S105 (a media type)
MAX_LIFETIME_SECONDS = 300
LEEWAY_SECONDS = 10
# A retired key is kept this long: every token it signed has expired by then.
PRUNE_AFTER = timedelta(seconds=MAX_LIFETIME_SECONDS + LEEWAY_SECONDS)
_INVALID = "The access token is not valid."


class TokenKeyError(SigningKeyError):
    """The token-signing key file exists but cannot serve as the gateway's signing keys."""


class TokenKeys(ValidityKeys):
    """The token-signing keys (`token-signing.jwks.json`). Keys made before rotation existed
    carry no not_before: valid since ever."""

    filename = TOKEN_SIGNING_JWKS
    algorithm = ALGORITHM
    label = "token-signing keys"
    not_before_required = False

    @classmethod
    def of(cls, keys: Sequence[OKPKey]) -> TokenKeys:
        """Fixed keys (no file), valid since ever; the last one signs."""
        return cls(
            [
                ValidityKey(key=key, kid=str(key.kid), not_before=SINCE_EVER, not_after=None)
                for key in keys
            ]
        )


def load_token_keys(keys_dir: Path) -> TokenKeys:
    """The gateway's token-signing keys, following the file while the gateway runs."""
    try:
        return TokenKeys.load(keys_dir)
    except SigningKeyError as error:
        raise TokenKeyError(str(error)) from None


class AccessTokens:
    """Signs and verifies the gateway's access tokens."""

    def __init__(
        self, keys: TokenKeys | Sequence[OKPKey], *, issuer: str, lifetime_seconds: int
    ) -> None:
        if not 0 < lifetime_seconds <= MAX_LIFETIME_SECONDS:
            raise ValueError(
                f"access token lifetime must be between 1 and {MAX_LIFETIME_SECONDS} seconds"
            )
        self.issuer = issuer
        self.lifetime_seconds = lifetime_seconds
        self.keys = keys if isinstance(keys, TokenKeys) else TokenKeys.of(keys)
        self._claims = JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": issuer},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
        )
        self._verified = VerifiedTokens()

    def public_jwks(self) -> dict[str, Any]:
        """Every verifying key (one a rotation added before it signs included), public parts
        only, with its validity period."""
        return self.keys.public_jwks()

    def issue_system_token(
        self, *, client_id: str, orgnr: str, agency_type: str, scopes: Sequence[str]
    ) -> dict[str, Any]:
        """A client_credentials access token, as the token endpoint returns it."""
        return self._issue(
            {
                "sub": client_id,
                "kind": "system",
                "client_id": client_id,
                "orgnr": orgnr,
                "agency_type": agency_type,
                "scope": " ".join(scopes),
            }
        )

    def issue_staff_token(
        self, *, client_id: str, agency_type: str, staff: StaffRead, scopes: Sequence[str]
    ) -> dict[str, Any]:
        """An access token acting for a staff member of the organisation `staff.orgnr` (the
        JWT-bearer grant, and `broen dev token --staff`). The caller checks that the staff
        member belongs to the client's organisation."""
        return self._issue(
            {
                "sub": str(staff.id),
                "kind": "staff",
                "client_id": client_id,
                "orgnr": staff.orgnr,
                "agency_type": agency_type,
                "unit_id": str(staff.unit_id),
                "staff_id": str(staff.id),
                "roles": list(staff.roles),
                "skjermet_authorised": staff.skjermet_authorised,
                "scope": " ".join(scopes),
            }
        )

    def issue_citizen_token(
        self,
        *,
        participant_id: uuid.UUID,
        acting_as: str = "participant",
        guardian: str | None = None,
    ) -> dict[str, Any]:
        """An access token acting for a participant: as themselves, or as their guardian
        (`guardian`: a pseudonym of the guardian, never their national id). It holds no
        scope: the citizen routes (`/api/v1/me/...`) check the kind."""
        if acting_as == "guardian":
            if not guardian:
                raise ValueError("a guardian's token names the guardian's pseudonym")
            subject = f"guardian:{guardian}"
        else:
            subject = str(participant_id)
        return self._issue(
            {
                "sub": subject,
                "kind": "citizen",
                "participant_id": str(participant_id),
                "acting_as": acting_as,
                "scope": "",
            }
        )

    def _issue(self, claims: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.issuer,
            **claims,
            "iat": now,
            "exp": now + self.lifetime_seconds,
            "jti": str(uuid.uuid4()),
        }
        signer = self.keys.signer_at(datetime.fromtimestamp(now, UTC))
        header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": signer.kid}
        token = jwt.encode(header, claims, signer.key, algorithms=[ALGORITHM])
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.lifetime_seconds,
            "scope": claims["scope"],
        }

    def verify(self, token: str) -> CallerContext:
        """The caller an access token stands for, or a 401 problem."""
        cached = self._verified.get(token)
        if cached is not None:
            return cached
        key = self._verifying_key(token)
        try:
            decoded = jwt.decode(token, key.key, algorithms=[ALGORITHM])
            self._claims.validate(decoded.claims)
            issued_at = datetime.fromtimestamp(decoded.claims["iat"], UTC)
        except (JoseError, ValueError, TypeError, OverflowError, OSError):
            raise Unauthorized(_INVALID) from None
        if decoded.header.get("typ") != TOKEN_TYPE:
            raise Unauthorized(_INVALID)
        if not key.valid_at(issued_at):  # a retired key vouches for nothing issued after
            raise Unauthorized(_INVALID)
        caller = _caller(decoded.claims)
        self._verified.put(token, caller, float(decoded.claims["exp"]))
        return caller

    def _verifying_key(self, token: str) -> ValidityKey:
        # The header is read before the signature is checked only to pick the key by kid; a
        # kid not known yet (another replica signing with a key just rotated in) makes the
        # key file be looked at again, at most once a second.
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError, TypeError):
            raise Unauthorized(_INVALID) from None
        kid = header.get("kid")
        key = self.keys.find(kid) if isinstance(kid, str) else None
        if key is None:
            raise Unauthorized(_INVALID)
        return key


def _caller(claims: dict[str, Any]) -> CallerContext:
    """The caller a verified token's claims describe; any claim out of shape is a 401."""
    try:
        kind = claims["kind"]
        scopes = tuple(_string(claims.get("scope", "")).split())
        if kind == "system" and claims["client_id"] == claims["sub"]:
            return CallerContext(
                kind="system",
                client_id=_string(claims["client_id"]),
                orgnr=_string(claims["orgnr"]),
                agency_type=_string(claims["agency_type"]),
                scopes=scopes,
            )
        if kind == "staff" and claims["staff_id"] == claims["sub"]:
            roles = claims["roles"]
            if not isinstance(roles, list) or not roles or not all(r in ROLES for r in roles):
                raise Unauthorized(_INVALID)
            skjermet_authorised = claims.get("skjermet_authorised", False)
            if not isinstance(skjermet_authorised, bool):
                raise Unauthorized(_INVALID)
            return CallerContext(
                kind="staff",
                client_id=_string(claims["client_id"]),
                orgnr=_string(claims["orgnr"]),
                agency_type=_string(claims["agency_type"]),
                scopes=scopes,
                staff_id=_uuid(claims["staff_id"]),
                unit_id=_uuid(claims["unit_id"]),
                roles=tuple(roles),
                skjermet_authorised=skjermet_authorised,
            )
        if kind == "citizen" and not scopes:
            # No organisation claims and no scope: a citizen token opens no organisation route.
            if {"client_id", "orgnr", "agency_type", "staff_id", "roles"} & claims.keys():
                raise Unauthorized(_INVALID)
            acting_as = claims.get("acting_as", "participant")
            subject = _string(claims["sub"])
            if (acting_as == "participant" and subject == claims["participant_id"]) or (
                acting_as == "guardian" and subject.startswith("guardian:")
            ):
                return CallerContext(
                    kind="citizen",
                    participant_id=_uuid(claims["participant_id"]),
                    acting_as=acting_as,
                )
    except (KeyError, ValidationError):
        raise Unauthorized(_INVALID) from None
    raise Unauthorized(_INVALID)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise Unauthorized(_INVALID)
    return value


def _uuid(value: Any) -> str:
    """A UUID claim in its canonical form."""
    try:
        canonical = str(uuid.UUID(_string(value)))
    except ValueError:
        raise Unauthorized(_INVALID) from None
    if canonical != value:
        raise Unauthorized(_INVALID)
    return canonical
