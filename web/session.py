"""Who is signed in, in a signed HttpOnly SameSite=Lax cookie (Starlette's SessionMiddleware),
and the CSRF token every form carries.

The cookie holds the person's Broen id, organisation and display name, never a national id.
A staff member's access token is not in it: the web app asks the gateway for one when it
needs it. A citizen's is, encrypted, since only the identity provider's sign-in can renew it.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.requests import Request

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"

Kind = Literal["staff", "participant"]


class NeedsSignIn(Exception):
    """No one is signed in, or the session has ended: back to the sign-in page."""

    def __init__(self, expired: bool = False) -> None:
        super().__init__("sign in")
        self.expired = expired


class CsrfRefused(Exception):
    """A form arrived without this session's CSRF token, or from another site."""


@dataclass(frozen=True, slots=True)
class Person:
    kind: Kind
    id: str  # the staff id, or the participant id
    name: str
    orgnr: str | None = None
    roles: list[str] = field(default_factory=list)

    @property
    def uuid(self) -> uuid.UUID:
        return uuid.UUID(self.id)


class Sessions:
    def __init__(self, secret: str, *, max_seconds: int) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"broen-web citizen token"
        ).derive(secret.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))
        self._max_seconds = max_seconds

    def person(self, request: Request) -> Person | None:
        """The signed-in person, None if no one is or the session is past its maximum age."""
        stored = request.session.get("person")
        if not isinstance(stored, dict):
            return None
        if time.time() - float(request.session.get("since", 0)) > self._max_seconds:
            request.session.clear()
            return None
        return Person(**stored)

    def sign_in(self, request: Request, person: Person, citizen_token: str | None = None) -> None:
        # A new session on sign-in (new CSRF token): nothing from before carries over.
        request.session.clear()
        request.session.update({"person": asdict(person), "since": time.time()})
        if citizen_token is not None:
            request.session["citizen_token"] = self._fernet.encrypt(citizen_token.encode()).decode()

    def citizen_token(self, request: Request) -> str | None:
        sealed = request.session.get("citizen_token")
        if not isinstance(sealed, str):
            return None
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None

    @staticmethod
    def sign_out(request: Request) -> None:
        request.session.clear()


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, form: dict[str, Any]) -> None:
    """The form's token must be this session's, and a browser that says where the request
    came from must say it came from here."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CsrfRefused()
    expected = request.session.get("csrf")
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not isinstance(expected, str) or not isinstance(sent, str):
        raise CsrfRefused()
    if not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CsrfRefused()
