"""What every page shares: the templates, who is signed in, their API, and form checks."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import httpx
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from web import texts
from web.api import Api
from web.forms import KEY_FIELD, SubmittedForms, new_form_key
from web.session import CSRF_FIELD, NeedsSignIn, Person, Sessions, check_csrf, csrf_token
from web.tokens import GatewayTokens, SignInRefused

OSLO = ZoneInfo("Europe/Oslo")

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def _local_time(value: str | datetime | None, pattern: str = "%d.%m.%Y kl. %H:%M") -> str:
    if value is None:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(OSLO).strftime(pattern)


def _local_date(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).strftime("%d.%m.%Y")


templates.env.filters.update(
    local_time=_local_time,
    local_date=_local_date,
    role=texts.role,
    agency=texts.agency,
    agency_in_sentence=texts.agency_in_sentence,
    purpose=texts.purpose,
    field=texts.field,
    category=texts.category,
    basis=texts.basis,
)
templates.env.globals.update(
    texts=texts, CSRF_FIELD=CSRF_FIELD, KEY_FIELD=KEY_FIELD, new_form_key=new_form_key
)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    sessions: Sessions = request.app.state.sessions
    has_session = "session" in request.scope  # not in the outermost error handler
    return templates.TemplateResponse(
        request,
        template,
        {
            "person": sessions.person(request) if has_session else None,
            "csrf_token": csrf_token(request) if has_session else "",
            **context,
        },
        status_code=status_code,
    )


def see_other(location: str) -> RedirectResponse:
    """After a POST: the browser GETs the result, so a reload does not send the form again."""
    return RedirectResponse(location, status_code=303)


def sign_in_location(request: Request, *, expired: bool = False) -> str:
    """The sign-in page, and where to come back to: the page asked for, or after a POST the
    page the form was on (its Referer)."""
    asked = request.url.path if request.method == "GET" else request.headers.get("referer", "")
    back = _own_path(asked)
    query = [f"neste={quote(back)}"] if back else []
    if expired:
        query.append("utlopt=1")
    return "/logg-inn" + ("?" + "&".join(query) if query else "")


def _own_path(value: str) -> str:
    """The path of `value` if it is a page on this site, else "" (no open redirect). Only the
    path: a query here is a one-time notice ("sendt=...") that must not show again."""
    path = urlsplit(value).path
    if not path.startswith("/") or path.startswith("//") or "\\" in value:
        return ""
    return "" if path.startswith("/logg-inn") else path


def safe_next(value: str | None) -> str:
    return _own_path(value or "")


def _person_of_kind(request: Request, kind: str) -> Person:
    sessions: Sessions = request.app.state.sessions
    person = sessions.person(request)
    if person is None:
        # A form sent without a session was written in one that has ended.
        raise NeedsSignIn(expired=request.method == "POST")
    if person.kind != kind:
        raise NeedsSignIn()
    return person


async def _staff_api(request: Request) -> Api:
    person = _person_of_kind(request, "staff")
    tokens: GatewayTokens = request.app.state.tokens
    assert person.orgnr is not None
    try:
        token = await tokens.for_staff(person.uuid, person.orgnr)
    except SignInRefused:
        # No longer a staff member there, or the client was removed: sign in again.
        request.session.clear()
        raise NeedsSignIn(expired=True) from None
    return Api(request.app.state.http, token)


async def _participant_api(request: Request) -> Api:
    _person_of_kind(request, "participant")
    sessions: Sessions = request.app.state.sessions
    token = sessions.citizen_token(request)
    if token is None:
        raise NeedsSignIn(expired=True)
    return Api(request.app.state.http, token)


def _staff(request: Request) -> Person:
    return _person_of_kind(request, "staff")


def _participant(request: Request) -> Person:
    return _person_of_kind(request, "participant")


async def _checked_form(request: Request) -> dict[str, Any]:
    """The POSTed form, once its CSRF token is checked."""
    form = {key: value for key, value in (await request.form()).multi_items()}
    check_csrf(request, form)
    return form


StaffApi = Annotated[Api, Depends(_staff_api)]
ParticipantApi = Annotated[Api, Depends(_participant_api)]
Staff = Annotated[Person, Depends(_staff)]
Participant = Annotated[Person, Depends(_participant)]
CheckedForm = Annotated[dict[str, Any], Depends(_checked_form)]


def submitted(request: Request) -> SubmittedForms:
    forms: SubmittedForms = request.app.state.submitted_forms
    return forms


def http(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient = request.app.state.http
    return client
