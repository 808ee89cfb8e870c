"""Signing in and out. In production: OpenID Connect (authlib's client) against the
configured providers: one for staff, whose ID token names their Broen staff id and
organisation, and one for citizens (ID-porten), whose ID token the gateway exchanges for a
citizen token. In dev mode also a demo sign-in that picks a seeded person."""

from __future__ import annotations

import uuid
from typing import Any

from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from web import demo
from web.pages import CheckedForm, render, safe_next, see_other
from web.session import Person, Sessions
from web.settings import WebSettings
from web.tokens import GatewayTokens, SignInRefused

router = APIRouter()

REFUSALS = {
    "organisation_not_connected": (
        "Virksomheten din har ikke tatt i bruk Broen på nett ennå. Kontakt den som forvalter "
        "Broen hos dere."
    ),
    "citizens_not_connected": "Innlogging for deltakere er ikke slått på her.",
    "invalid_grant": "Du finnes ikke i Broen med den rollen, eller tilgangen er tatt bort.",
}
REFUSED = "Innloggingen ble avvist. Prøv igjen, eller kontakt den som forvalter Broen hos dere."


def oauth_clients(settings: WebSettings) -> OAuth:
    oauth = OAuth()
    for name, provider in (("staff", settings.staff_oidc), ("citizen", settings.citizen_oidc)):
        if provider is None:
            continue
        oauth.register(
            name,
            server_metadata_url=provider.metadata_url,
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            client_kwargs={"scope": provider.scope, "code_challenge_method": "S256"},
        )
    return oauth


def home_of(person: Person | None) -> str:
    if person is None:
        return "/logg-inn"
    return "/innboks" if person.kind == "staff" else "/mine-samtykker"


@router.get("/", include_in_schema=False, response_model=None)
async def home(request: Request) -> RedirectResponse:
    sessions: Sessions = request.app.state.sessions
    return RedirectResponse(home_of(sessions.person(request)), status_code=303)


@router.get("/logg-inn", response_class=HTMLResponse, response_model=None)
async def sign_in_page(request: Request, error: str | None = None) -> HTMLResponse:
    settings: WebSettings = request.app.state.settings
    offered = demo.people(settings.demo_people_file) if settings.is_dev else None
    return render(
        request,
        "signin.html",
        status_code=400 if error else 200,
        demo=offered,
        staff_oidc=settings.staff_oidc is not None,
        citizen_oidc=settings.citizen_oidc is not None,
        next=safe_next(request.query_params.get("neste")),
        expired=request.query_params.get("utlopt") == "1",
        error=error,
    )


async def _finish(
    request: Request, person: Person, citizen_token: str | None = None
) -> RedirectResponse:
    sessions: Sessions = request.app.state.sessions
    next_page = safe_next(request.session.get("next") or request.query_params.get("neste"))
    sessions.sign_in(request, person, citizen_token)
    return see_other(next_page or home_of(person))


@router.post("/logg-inn/demo", response_model=None)
async def demo_sign_in(request: Request, form: CheckedForm) -> HTMLResponse | RedirectResponse:
    settings: WebSettings = request.app.state.settings
    if not settings.is_dev:
        raise HTTPException(status_code=404)
    offered = demo.people(settings.demo_people_file)
    who = str(form.get("who", ""))
    request.session["next"] = safe_next(str(form.get("neste", "")))
    tokens: GatewayTokens = request.app.state.tokens
    try:
        kind, _, key = who.partition(":")
        if kind == "staff":
            staff = next(s for s in offered["staff"] if s["id"] == key)
            await tokens.for_staff(uuid.UUID(staff["id"]), staff["orgnr"])
            person = Person("staff", staff["id"], staff["name"], staff["orgnr"], staff["roles"])
            return await _finish(request, person)
        if kind == "participant":
            chosen = next(p for p in offered["participants"] if p["key"] == key)
            issued = await tokens.for_citizen(
                demo.id_token(settings.public_url, chosen["national_id"])
            )
            person = Person("participant", issued.subject, chosen["name"])
            return await _finish(request, person, issued.value)
    except StopIteration:
        pass
    except SignInRefused as refusal:
        return await sign_in_page(request, REFUSALS.get(refusal.reason, REFUSED))
    return await sign_in_page(request, "Velg hvem du vil logge inn som.")


@router.get("/logg-inn/{kind}", include_in_schema=False, response_model=None)
async def start_oidc(request: Request, kind: str) -> HTMLResponse | RedirectResponse:
    client = _oidc_client(request, kind)
    settings: WebSettings = request.app.state.settings
    request.session["next"] = safe_next(request.query_params.get("neste"))
    redirect_uri = f"{settings.public_url.rstrip('/')}/logg-inn/{kind}/ferdig"
    response: RedirectResponse = await client.authorize_redirect(request, redirect_uri)
    return response


@router.get("/logg-inn/{kind}/ferdig", include_in_schema=False, response_model=None)
async def finish_oidc(request: Request, kind: str) -> HTMLResponse | RedirectResponse:
    client = _oidc_client(request, kind)
    settings: WebSettings = request.app.state.settings
    tokens: GatewayTokens = request.app.state.tokens
    try:
        answer = await client.authorize_access_token(request)
    except OAuthError:
        return await sign_in_page(request, REFUSED)
    claims: dict[str, Any] = answer.get("userinfo") or {}
    try:
        if kind == "ansatt":
            provider = settings.staff_oidc
            assert provider is not None
            staff_id = uuid.UUID(str(claims.get(provider.staff_id_claim)))
            orgnr = str(claims.get(provider.orgnr_claim))
            await tokens.for_staff(staff_id, orgnr)
            name = str(claims.get("name") or "Ansatt")
            return await _finish(request, Person("staff", str(staff_id), name, orgnr))
        issued = await tokens.for_citizen(str(answer.get("id_token")))
        person = Person("participant", issued.subject, str(claims.get("name") or "Deltaker"))
        return await _finish(request, person, issued.value)
    except ValueError:
        return await sign_in_page(request, REFUSED)
    except SignInRefused as refusal:
        return await sign_in_page(request, REFUSALS.get(refusal.reason, REFUSED))


def _oidc_client(request: Request, kind: str) -> Any:
    """The configured provider for `kind`; a 404 page when there is none."""
    name = {"ansatt": "staff", "innbygger": "citizen"}.get(kind)
    oauth: OAuth = request.app.state.oauth
    client = oauth.create_client(name) if name else None
    if client is None:
        raise HTTPException(status_code=404)
    return client


@router.post("/logg-ut", response_model=None)
async def sign_out(request: Request, form: CheckedForm) -> RedirectResponse:
    sessions: Sessions = request.app.state.sessions
    person = sessions.person(request)
    if person is not None and person.kind == "staff":
        tokens: GatewayTokens = request.app.state.tokens
        tokens.forget(person.uuid)
    sessions.sign_out(request)
    return see_other("/logg-inn?ut=1")
