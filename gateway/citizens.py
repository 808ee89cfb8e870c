"""Citizens from an identity provider: its ID token, verified against the keys the operator
configured, names a person by national id; the participant service maps that through its
blind index to the participant (and the minors the person is guardian of). The token
endpoint then issues a Broen citizen token (the RFC 8693 token exchange in oauth.py).

The national id is read here and passed on in a request body; it is never logged, never
put in an error message, and never in the token Broen issues.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from stdnum.no import fodselsnummer

from gateway.settings import CitizenIssuer
from shared.settings import ConfigurationError

LEEWAY_SECONDS = 30


class UntrustedCitizenToken(Exception):
    """The subject token is not one Broen accepts; the message says why, without its content."""


class CitizenIssuers:
    def __init__(self, issuers: Sequence[CitizenIssuer]) -> None:
        self._issuers: dict[str, tuple[CitizenIssuer, KeySet]] = {}
        for issuer in issuers:
            try:
                keys = KeySet.import_key_set(json.loads(issuer.jwks_path.read_text()))
            except (OSError, ValueError, TypeError, KeyError, JoseError) as error:
                raise ConfigurationError(
                    f"citizen issuer {issuer.issuer}: {issuer.jwks_path} is not a readable JWKS "
                    f"({type(error).__name__})"
                ) from None
            self._issuers[issuer.issuer] = (issuer, keys)

    def __bool__(self) -> bool:
        return bool(self._issuers)

    def national_id(self, token: str) -> str:
        """The national id a trusted issuer's valid token vouches for."""
        issuer_name = _unverified_issuer(token)
        found = self._issuers.get(issuer_name) if issuer_name else None
        if found is None:
            raise UntrustedCitizenToken("The subject token is not from a trusted issuer.")
        issuer, keys = found
        try:
            claims = jwt.decode(token, keys, algorithms=list(issuer.algorithms)).claims
        except (JoseError, ValueError, TypeError):
            raise UntrustedCitizenToken("The subject token's signature does not verify.") from None
        registry = JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer.issuer},
            aud={"essential": True, "value": issuer.audience},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise UntrustedCitizenToken(
                f"The subject token is not valid here ({error.error})."
            ) from None
        number = claims.get(issuer.national_id_claim)
        if not isinstance(number, str) or not fodselsnummer.is_valid(number):
            raise UntrustedCitizenToken("The subject token names no valid national id.")
        return str(fodselsnummer.compact(number))


def _unverified_issuer(token: str) -> str | None:
    """Which issuer the token says it is from, to pick the keys (verified right after)."""
    try:
        payload: Any = json.loads(jws.extract_compact(token.encode()).payload)
    except (JoseError, ValueError, TypeError):
        return None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer if isinstance(issuer, str) else None
