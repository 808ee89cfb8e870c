"""Pages for staff: the inbox, a thread, the participant card, a new message to the
participant's NAV veileder (or kontaktlærer), and a consent request."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from web import texts
from web.api import Api, ApiError
from web.pages import CheckedForm, Staff, StaffApi, render, see_other, submitted
from web.session import Person

router = APIRouter()

PURPOSE = "oppfolging"
# Fields of the participant card, in the order shown.
CARD_FIELDS = ("name", "birth_date", "phone", "email", "address")
INBOX_SIZE = 100


def inbox_order(threads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Unread first, then those waiting on me, then overdue; newest first within each (the
    second sort is stable, so it keeps the first's order among equals)."""
    newest_first = sorted(threads, key=lambda t: str(t["last_message_at"]), reverse=True)
    return sorted(
        newest_first, key=lambda t: (t["unread"] == 0, not t["waiting_on_me"], not t["overdue"])
    )


def other_side(thread: dict[str, Any]) -> dict[str, Any]:
    side: dict[str, Any] = thread["recipient" if thread["me"] == "initiator" else "initiator"]
    return side


def party_label(party: dict[str, Any], organisations: dict[str, str]) -> str:
    who = texts.role(party.get("role")) or "Virksomheten"
    where = organisations.get(party["orgnr"]) or texts.agency(party.get("agency_type"))
    if party.get("staff_name"):
        return f"{party['staff_name']} ({who}), {where}"
    return f"{who}, {where}"


async def organisations(request: Request, api: Api) -> dict[str, dict[str, str]]:
    """The directory's organisations by orgnr (name, agency type), read once per process."""
    cached: dict[str, dict[str, str]] | None = getattr(request.app.state, "organisations", None)
    if cached is None:
        listed = await api.get("/organisations", params={"limit": 500})
        cached = {o["orgnr"]: o for o in listed["items"]}
        request.app.state.organisations = cached
    return cached


async def organisation_names(request: Request, api: Api) -> dict[str, str]:
    return {orgnr: o["name"] for orgnr, o in (await organisations(request, api)).items()}


async def agency_of(request: Request, api: Api, staff: Person) -> str:
    return (await organisations(request, api)).get(staff.orgnr or "", {}).get("agency_type", "")


@router.get("/innboks", response_class=HTMLResponse, response_model=None)
async def inbox(request: Request, staff: Staff, api: StaffApi) -> HTMLResponse:
    listed = await api.get("/threads", params={"limit": INBOX_SIZE})
    threads = inbox_order(listed["items"])
    organisations = await organisation_names(request, api)
    return render(
        request,
        "inbox.html",
        threads=threads,
        counterpart={t["id"]: party_label(other_side(t), organisations) for t in threads},
        more=listed.get("next_cursor") is not None,
    )


@router.post("/deltakere/finn", response_model=None)
async def find_participant(
    request: Request, staff: Staff, api: StaffApi, form: CheckedForm
) -> HTMLResponse | RedirectResponse:
    """By national id, sent in the body to the API and never put in a URL or the page."""
    national_id = str(form.get("national_id", "")).replace(" ", "")
    try:
        found = await api.post(
            "/participants/lookup", {"national_id": national_id}, purpose=PURPOSE
        )
    except ApiError as error:
        message = (
            "Fant ingen deltaker med det fødselsnummeret som du har tilgang til."
            if error.status in (404, 422)
            else error.message
        )
        return render(request, "find.html", status_code=error.status, error=message)
    return see_other(f"/deltakere/{found['id']}")


@router.get("/deltakere/finn", response_class=HTMLResponse, response_model=None)
async def find_form(request: Request, staff: Staff) -> HTMLResponse:
    return render(request, "find.html")


async def _card(
    request: Request, staff: Person, api: Api, participant_id: uuid.UUID, **form: Any
) -> dict[str, Any]:
    path = f"/participants/{participant_id}"
    participant, assignments, consents = await asyncio.gather(
        api.get(path, purpose=PURPOSE),
        api.get(f"{path}/assignments", purpose=PURPOSE),
        api.get(f"{path}/consents", purpose=PURPOSE),
    )
    names = await organisation_names(request, api)
    my_agency = await agency_of(request, api, staff)
    current = [a for a in assignments["items"] if a.get("valid_to") is None]
    withheld = {w["field"]: w["reason"] for w in participant.get("withheld", [])}
    addressee = "kontaktlaerer" if my_agency == "nav" else "veileder"
    return {
        "participant": participant,
        "fields": [(name, participant.get(name), withheld.get(name)) for name in CARD_FIELDS],
        "assignments": current,
        "organisations": names,
        "veileder_shared": my_agency == "nav" or _consented(consents["items"], my_agency),
        "show_veileder_row": my_agency != "nav",
        "addressee": addressee,
        "categories": texts.REQUESTABLE_CATEGORIES,
        **form,
    }


def _consented(consents: list[dict[str, Any]], agency: str) -> bool:
    """An active consent lets NAV tell this agency who follows the participant up."""
    return any(
        c["status"] == "active"
        and "nav" in c["disclosers"]
        and agency in c["recipients"]
        and PURPOSE in c["purposes"]
        and "nav.followup" in c["categories"]
        for c in consents
    )


@router.get("/deltakere/{participant_id}", response_class=HTMLResponse, response_model=None)
async def participant_card(
    request: Request, participant_id: uuid.UUID, staff: Staff, api: StaffApi
) -> HTMLResponse:
    card = await _card(request, staff, api, participant_id)
    return render(request, "participant.html", **card)


@router.post("/deltakere/{participant_id}/melding", response_model=None)
async def write_to_role(
    request: Request, participant_id: uuid.UUID, staff: Staff, api: StaffApi, form: CheckedForm
) -> HTMLResponse | RedirectResponse:
    """A new thread to whoever holds the role for the participant (the API resolves who)."""
    subject = str(form.get("subject", ""))
    body = str(form.get("body", ""))
    addressee = str(form.get("to", "veileder"))

    async def open_thread() -> str:
        thread = await api.post(
            "/threads",
            {
                "participant_id": str(participant_id),
                "purpose": PURPOSE,
                "to": {"role": addressee},
                "subject": subject,
                "body": body,
            },
        )
        return f"/samtaler/{thread['id']}?sendt=ny-melding-{participant_id}"

    try:
        location = await submitted(request).once(staff.id, str(form.get("form_key")), open_thread)
    except ApiError as error:
        card = await _card(request, staff, api, participant_id)
        return render(
            request,
            "participant.html",
            status_code=error.status,
            message_error=error.message,
            message_invalid=error.invalid_fields,
            draft={"subject": subject, "body": body},
            **card,
        )
    return see_other(location)


@router.get(
    "/deltakere/{participant_id}/samtykke", response_class=HTMLResponse, response_model=None
)
async def consent_request_form(
    request: Request, participant_id: uuid.UUID, staff: Staff, api: StaffApi
) -> HTMLResponse:
    participant = await api.get(f"/participants/{participant_id}", purpose=PURPOSE)
    return render(
        request,
        "consent_request.html",
        participant=participant,
        categories=texts.REQUESTABLE_CATEGORIES,
        chosen=("contact", "nav.followup"),
    )


@router.post("/deltakere/{participant_id}/samtykke", response_model=None)
async def request_consent(
    request: Request, participant_id: uuid.UUID, staff: Staff, api: StaffApi, form: CheckedForm
) -> HTMLResponse | RedirectResponse:
    """Ask the participant to let NAV share with the staff member's agency."""
    chosen = [c for c in texts.REQUESTABLE_CATEGORIES if form.get(f"category.{c}")]
    justification = str(form.get("justification", "")).strip()
    my_agency = await agency_of(request, api, staff)
    discloser = "skole" if my_agency == "nav" else "nav"

    async def ask() -> str:
        await api.post(
            "/consent-requests",
            {
                "participant_id": str(participant_id),
                "disclosers": [discloser],
                "recipients": [my_agency],
                "purposes": [PURPOSE],
                "categories": chosen,
                "justification": justification,
            },
        )
        return f"/deltakere/{participant_id}?samtykke=sendt"

    try:
        if not chosen or not justification:
            raise ApiError(422, {"errors": []})
        location = await submitted(request).once(staff.id, str(form.get("form_key")), ask)
    except ApiError as error:
        participant = await api.get(f"/participants/{participant_id}", purpose=PURPOSE)
        return render(
            request,
            "consent_request.html",
            status_code=error.status,
            participant=participant,
            categories=texts.REQUESTABLE_CATEGORIES,
            chosen=chosen,
            justification=justification,
            error=(
                "Velg minst én opplysning og skriv hvorfor du spør."
                if not chosen or not justification
                else error.message
            ),
        )
    return see_other(location)


@router.get("/samtaler/{thread_id}", response_class=HTMLResponse, response_model=None)
async def thread_page(
    request: Request, thread_id: uuid.UUID, staff: Staff, api: StaffApi
) -> HTMLResponse:
    return render(request, "thread.html", **await _thread(request, api, thread_id, mark_read=True))


async def _thread(
    request: Request, api: Api, thread_id: uuid.UUID, *, mark_read: bool
) -> dict[str, Any]:
    thread, messages = await asyncio.gather(
        api.get(f"/threads/{thread_id}"),
        api.get(f"/threads/{thread_id}/messages", params={"limit": 200}),
    )
    if mark_read and thread["unread"]:
        thread = await api.post(f"/threads/{thread_id}/read")
    organisations = await organisation_names(request, api)
    try:
        participant = await api.get(
            f"/participants/{thread['participant_id']}", purpose=thread["purpose"]
        )
    except ApiError:
        participant = None
    return {
        "thread": thread,
        "messages": messages["items"],
        "participant": participant,
        "initiator": party_label(thread["initiator"], organisations),
        "recipient": party_label(thread["recipient"], organisations),
        "other": party_label(other_side(thread), organisations),
    }


@router.post("/samtaler/{thread_id}/svar", response_model=None)
async def reply(
    request: Request, thread_id: uuid.UUID, staff: Staff, api: StaffApi, form: CheckedForm
) -> HTMLResponse | RedirectResponse:
    body = str(form.get("body", ""))

    async def post() -> str:
        await api.post(f"/threads/{thread_id}/messages", {"body": body})
        return f"/samtaler/{thread_id}?sendt=svar-{thread_id}#siste"

    try:
        location = await submitted(request).once(staff.id, str(form.get("form_key")), post)
    except ApiError as error:
        page = await _thread(request, api, thread_id, mark_read=False)
        return render(
            request,
            "thread.html",
            status_code=error.status,
            reply_error=error.message,
            reply_invalid=error.invalid_fields,
            draft=body,
            **page,
        )
    return see_other(location)
