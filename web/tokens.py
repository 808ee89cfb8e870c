"""The web app's own access tokens from the gateway, as any registered client gets them:
`private_key_jwt` client authentication, the JWT-bearer grant to act for a staff member,
and the token exchange (RFC 8693) for a citizen whose ID token it holds."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.jwk import OKPKey

from shared.keys import read_json
from web.api import ApiError

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105
STAFF_SCOPE = "participants:read messages consents:read consents:write"
# A cached token is renewed this long before it expires, so a page never sends a stale one.
RENEW_BEFORE_SECONDS = 30


class SignInRefused(Exception):
    """The gateway would not issue a token for this person; `reason` is for the page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_at: float

    @property
    def fresh(self) -> bool:
        return time.time() < self.expires_at - RENEW_BEFORE_SECONDS

    @property
    def subject(self) -> str:
        """Whom the gateway issued it for (its `sub`). Read, not verified: the token came
        from the gateway over the connection the web app opened."""
        claims = json.loads(jws.extract_compact(self.value.encode()).payload)
        return str(claims["sub"])


class GatewayTokens:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        issuer: str,
        key: OKPKey,
        staff_clients: dict[str, str],
        citizen_client: str | None,
    ) -> None:
        self._http = http
        self._issuer = issuer
        self._key = key
        self._staff_clients = staff_clients
        self._citizen_client = citizen_client
        self._staff: dict[uuid.UUID, AccessToken] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def load(
        cls,
        http: httpx.AsyncClient,
        *,
        issuer: str,
        keys_dir: Any,
        key_file: str,
        staff_clients: dict[str, str],
        citizen_client: str | None,
    ) -> GatewayTokens:
        key = OKPKey.import_key(read_json(keys_dir, key_file))
        return cls(
            http,
            issuer=issuer,
            key=key,
            staff_clients=staff_clients,
            citizen_client=citizen_client,
        )

    def serves_organisation(self, orgnr: str) -> bool:
        return orgnr in self._staff_clients

    @property
    def serves_citizens(self) -> bool:
        return self._citizen_client is not None

    async def for_staff(self, staff_id: uuid.UUID, orgnr: str) -> str:
        """A token acting for the staff member, through their organisation's client."""
        cached = self._staff.get(staff_id)
        if cached is not None and cached.fresh:
            return cached.value
        async with self._lock:
            cached = self._staff.get(staff_id)
            if cached is not None and cached.fresh:
                return cached.value
            client_id = self._staff_clients.get(orgnr)
            if client_id is None:
                raise SignInRefused("organisation_not_connected")
            issued = await self._token(
                client_id,
                {
                    "grant_type": JWT_BEARER,
                    "assertion": self._signed(client_id, subject=str(staff_id)),
                    "scope": STAFF_SCOPE,
                },
            )
            self._staff[staff_id] = issued
            return issued.value

    async def for_citizen(self, id_token: str) -> AccessToken:
        """A citizen token for the person the identity provider's ID token names."""
        if self._citizen_client is None:
            raise SignInRefused("citizens_not_connected")
        return await self._token(
            self._citizen_client,
            {
                "grant_type": TOKEN_EXCHANGE,
                "subject_token": id_token,
                "subject_token_type": ID_TOKEN_TYPE,
            },
        )

    def forget(self, staff_id: uuid.UUID) -> None:
        self._staff.pop(staff_id, None)

    async def _token(self, client_id: str, form: dict[str, str]) -> AccessToken:
        form = {
            **form,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self._signed(client_id, subject=client_id),
        }
        try:
            response = await self._http.post("/oauth/token", data=form)
        except httpx.HTTPError:
            raise ApiError(503) from None
        if response.status_code == 200:
            body = response.json()
            return AccessToken(body["access_token"], time.time() + float(body["expires_in"]))
        if response.status_code in (400, 401):
            # invalid_grant: not a staff member of the client's organisation, or no participant.
            raise SignInRefused(_oauth_error(response))
        if response.status_code >= 500 or response.status_code == 429:
            raise ApiError(response.status_code)
        raise SignInRefused("unexpected_answer")

    def _signed(self, client_id: str, *, subject: str) -> str:
        now = int(time.time())
        claims = {
            "iss": client_id,
            "sub": subject,
            "aud": self._issuer,
            "iat": now,
            "exp": now + 60,
            "jti": str(uuid.uuid4()),
        }
        header = {"alg": "Ed25519", "kid": self._key.kid}
        return jwt.encode(header, claims, self._key, algorithms=["Ed25519"])


def _oauth_error(response: httpx.Response) -> str:
    try:
        error = json.loads(response.text).get("error")
    except (ValueError, AttributeError):
        return "unexpected_answer"
    return error if isinstance(error, str) else "unexpected_answer"
