"""Pages for the participant (or a guardian): "Mine samtykker" and "Hvem har sett
opplysningene mine"."""

from __future__ import annotations

import asyncio
import json
import uuid

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from web.api import ApiError
from web.pages import CheckedForm, Participant, ParticipantApi, render, see_other, submitted

router = APIRouter()


async def _consents_page(
    request: Request, api: ParticipantApi, status_code: int = 200, error: str | None = None
) -> HTMLResponse:
    requests, consents = await asyncio.gather(
        api.get("/me/consent-requests", params={"limit": 100}),
        api.get("/me/consents", params={"limit": 100}),
    )
    return render(
        request,
        "my_consents.html",
        status_code=status_code,
        pending=[r for r in requests["items"] if r["status"] == "pending"],
        consents=consents["items"],
        error=error,
        done=request.query_params.get("gjort"),
    )


@router.get("/mine-samtykker", response_class=HTMLResponse, response_model=None)
async def my_consents(request: Request, person: Participant, api: ParticipantApi) -> HTMLResponse:
    return await _consents_page(request, api)


# What each one-click answer calls, and the word the page confirms it with.
ANSWERS = {
    "godta": ("/me/consent-requests/{id}/accept", "godtatt"),
    "avsla": ("/me/consent-requests/{id}/decline", "avslatt"),
    "trekk": ("/me/consents/{id}/withdraw", "trukket"),
}


@router.post("/mine-samtykker/{answer}/{item_id}", response_model=None)
async def answer_consent(
    request: Request,
    answer: str,
    item_id: uuid.UUID,
    person: Participant,
    api: ParticipantApi,
    form: CheckedForm,
) -> HTMLResponse | RedirectResponse:
    if answer not in ANSWERS:
        raise HTTPException(status_code=404)
    path, done = ANSWERS[answer]

    async def act() -> str:
        await api.post(path.format(id=item_id))
        return f"/mine-samtykker?gjort={done}"

    try:
        location = await submitted(request).once(person.id, str(form.get("form_key")), act)
    except ApiError as error:
        return await _consents_page(request, api, error.status, error.message)
    return see_other(location)


@router.get("/mine-samtykker/{consent_id}/kvittering", response_model=None)
async def receipt(consent_id: uuid.UUID, person: Participant, api: ParticipantApi) -> Response:
    """The signed receipt as a file to keep (the API's JSON, verifiable with its keys)."""
    found = await api.get(f"/me/consents/{consent_id}/receipt")
    return Response(
        json.dumps(found, indent=2, ensure_ascii=False),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="samtykke-{consent_id}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/innsyn", response_class=HTMLResponse, response_model=None)
async def access_log(request: Request, person: Participant, api: ParticipantApi) -> HTMLResponse:
    log = await api.get("/me/access-log", params={"limit": 100})
    return render(request, "access_log.html", entries=log["items"], more=log.get("next_cursor"))
