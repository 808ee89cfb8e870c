"""Consent routes at the gateway. Before a call reaches the consent service the gateway
checks what needs the policy: that purposes and categories are the policy's (422 naming
the unknown ones), that the caller may see the participant (the same 404 as for an
unknown one), that the grantor may grant at the participant's age (422 saying who may),
and that a receiving organisation does not record a consent that lets itself receive.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response

from gateway.clients import GATEWAY_ITSELF, ConsentClient, ParticipantClient, ParticipantsDep
from gateway.deps import CallerDep, require_scope
from gateway.personvern import PersonvernDep, PurposeDep
from gateway.policy import Policy, PurposeNotAllowed, Subject, gate_reason, subject_of
from gateway.policy.decide import PURPOSE_NOT_ALLOWED, allowed_purposes, grantors_counting
from gateway.policy.project import whole_resource_decision
from services.consent.errors import ConsentNotFound
from services.consent.schemas import (
    Acceptance,
    ConsentList,
    ConsentRead,
    ConsentRecordCreate,
    ConsentRequestCreate,
    ConsentRequestList,
    ConsentRequestRead,
    LegalBasisList,
    ReceiptRead,
    RecordedConsent,
    RequestAnswer,
)
from services.participant.errors import ParticipantNotFound
from services.participant.schemas import eighteenth_birthday
from shared.app import json_response
from shared.clients import Upstream
from shared.internal_auth import CallerContext
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit, page_params
from shared.problems import Forbidden, ValidationProblem, problem_responses

router = APIRouter(prefix="/api/v1", responses=problem_responses(400, 401, 403, 422, 503))
well_known = APIRouter(prefix="/.well-known")

ConsentReader = Annotated[CallerContext, Depends(require_scope("consents:read"))]
ConsentWriter = Annotated[CallerContext, Depends(require_scope("consents:write"))]
AnyOrganisation = Annotated[CallerContext, Depends(require_scope("participants:read"))]


class UnknownTerms(ValidationProblem):
    type = "unknown-terms"
    title = "Unknown purpose or category"


class GrantorMayNotGrant(ValidationProblem):
    type = "grantor-may-not-grant"
    title = "This grantor may not grant the consent"


class MayNotRecord(Forbidden):
    type = "may-not-record-consent"
    title = "Your organisation may not record this consent"


def _consents(request: Request) -> Upstream:
    client: ConsentClient = request.app.state.consent_client
    return client.upstream


ConsentUpstream = Annotated[Upstream, Depends(_consents)]


def check_terms(policy: Policy, purposes: Sequence[str], categories: Sequence[str]) -> None:
    """Purposes and categories must be the policy's; `never` categories cannot be consented."""
    unknown_purposes = sorted(set(purposes) - policy.purposes)
    unknown_categories = sorted(set(categories) - policy.categories)
    if unknown_purposes or unknown_categories:
        named = ", ".join(unknown_purposes + unknown_categories)
        raise UnknownTerms(
            f"Not in the policy: {named}.",
            unknown_purposes=unknown_purposes,
            unknown_categories=unknown_categories,
            purposes=sorted(policy.purposes),
            categories=sorted(policy.categories - policy.never),
        )
    never = sorted(set(categories) & policy.never)
    if never:
        raise UnknownTerms(
            f"These categories never cross, and no consent can change that: {', '.join(never)}.",
            unknown_purposes=[],
            unknown_categories=never,
            purposes=sorted(policy.purposes),
            categories=sorted(policy.categories - policy.never),
        )


async def visible_subject(
    personvern: PersonvernDep,
    participants: ParticipantClient,
    caller: CallerContext,
    participant_id: uuid.UUID,
    purposes: Sequence[str],
) -> Subject:
    """The participant's flags and birth date, if the caller may work with them for every
    one of `purposes`; the 404 of an unknown participant otherwise (a purpose the caller's
    role may not declare is a 400 listing the ones it may)."""
    answer = await participants.read(caller, participant_id)
    subject = subject_of(answer.participant)
    for purpose in purposes:
        reason = personvern.gate(caller, purpose, answer.relationships, subject)
        if reason == PURPOSE_NOT_ALLOWED:
            raise PurposeNotAllowed(
                f"Your role may not work with the purpose {purpose}.",
                allowed_purposes=list(allowed_purposes(personvern.policy, caller)),
            )
        if reason is not None:
            raise ParticipantNotFound()
    return subject


def check_grantor(
    policy: Policy,
    subject: Subject,
    purposes: Sequence[str],
    grantor: str,
    effective: datetime | None = None,
) -> datetime | None:
    """Refuse a grantor who may not grant at the participant's age when the consent takes
    effect (422 saying who may); returns when a guardian's consent ends (the 18th
    birthday), if it is one."""
    moment = effective or datetime.now(UTC)
    may_grant = {p: sorted(grantors_counting(policy, subject, p, moment)) for p in purposes}
    refused = {p: who for p, who in may_grant.items() if grantor not in who}
    if refused:
        said = "; ".join(
            f"{p}: {' or '.join(who) or 'nobody (birth date unknown)'}"
            for p, who in refused.items()
        )
        raise GrantorMayNotGrant(
            f"At the participant's age the consent is not the {grantor}'s to give. "
            f"Who may grant it: {said}.",
            may_grant=refused,
        )
    if grantor == "guardian" and subject.birth_date is not None:
        return eighteenth_birthday(subject.birth_date)
    return None


# --- asking for consent --------------------------------------------------------------------


@router.post(
    "/consent-requests",
    tags=["consents"],
    status_code=201,
    response_model=ConsentRequestRead,
    responses=problem_responses(400, 404),
)
async def create_consent_request(
    data: ConsentRequestCreate,
    caller: ConsentWriter,
    personvern: PersonvernDep,
    participants: ParticipantsDep,
    consents: ConsentUpstream,
) -> Response:
    """Ask the participant for consent; they answer with their own token."""
    check_terms(personvern.policy, data.purposes, data.categories)
    await visible_subject(personvern, participants, caller, data.participant_id, data.purposes)
    created, status = await consents.fetch(
        ConsentRequestRead,
        "POST",
        "/api/v1/consent-requests",
        caller,
        content=data.model_dump_json().encode(),
    )
    return json_response(created, status)


@router.get("/me/consent-requests", tags=["me"], response_model=ConsentRequestList)
async def list_my_consent_requests(
    caller: CallerDep,
    consents: ConsentUpstream,
    status: Literal["pending", "accepted", "declined"] = "pending",
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """Requests for your consent, with the asking organisation's justification."""
    params = {"status": status, **page_params(limit, cursor)}
    found, _ = await consents.fetch(
        ConsentRequestList, "GET", "/api/v1/me/consent-requests", caller, params=params
    )
    return json_response(found)


@router.post(
    "/me/consent-requests/{request_id}/accept",
    tags=["me"],
    status_code=201,
    response_model=ConsentRead,
    responses=problem_responses(404, 409),
)
async def accept_consent_request(
    request_id: uuid.UUID,
    caller: CallerDep,
    personvern: PersonvernDep,
    participants: ParticipantsDep,
    consents: ConsentUpstream,
    answer: RequestAnswer | None = None,
) -> Response:
    """Give the consent asked for. Accepting again returns the same consent."""
    path = f"/api/v1/me/consent-requests/{request_id}"
    request, _ = await consents.fetch(ConsentRequestRead, "GET", path, caller)
    person = await participants.read(caller, request.participant_id)
    grantor = "guardian" if caller.acting_as == "guardian" else "participant"
    ends_by = check_grantor(
        personvern.policy, subject_of(person.participant), request.purposes, grantor
    )
    acceptance = Acceptance(
        language=answer.language if answer else None,
        grantor=grantor,
        grantor_relation="guardian" if grantor == "guardian" else "self",
        ends_by=ends_by,
    )
    given, status = await consents.fetch(
        ConsentRead, "POST", f"{path}/accept", caller, content=acceptance.model_dump_json().encode()
    )
    return json_response(given, status)


@router.post(
    "/me/consent-requests/{request_id}/decline",
    tags=["me"],
    response_model=ConsentRequestRead,
    responses=problem_responses(404, 409),
)
async def decline_consent_request(
    request_id: uuid.UUID, caller: CallerDep, consents: ConsentUpstream
) -> Response:
    """Say no. Declining again returns the same state."""
    declined, _ = await consents.fetch(
        ConsentRequestRead, "POST", f"/api/v1/me/consent-requests/{request_id}/decline", caller
    )
    return json_response(declined)


# --- consents ------------------------------------------------------------------------------


@router.post(
    "/consents",
    tags=["consents"],
    status_code=201,
    response_model=ConsentRead,
    responses=problem_responses(400, 404),
)
async def record_consent(
    data: ConsentRecordCreate,
    caller: ConsentWriter,
    personvern: PersonvernDep,
    participants: ParticipantsDep,
    consents: ConsentUpstream,
) -> Response:
    """Record a consent given to your organisation outside Broen (on paper, orally), as the
    organisation that will disclose. The participant sees it among their consents."""
    check_terms(personvern.policy, data.purposes, data.categories)
    ours = {caller.orgnr or "", caller.agency_type or ""}
    if ours & set(data.recipients):
        raise MayNotRecord(
            "A receiving organisation cannot record a consent that lets itself receive; the "
            "disclosing organisation records it, or the participant gives it in Broen."
        )
    if not ours & set(data.disclosers):
        raise MayNotRecord("Only an organisation that discloses under the consent records it.")
    subject = await visible_subject(
        personvern, participants, caller, data.participant_id, data.purposes
    )
    ends_by = check_grantor(
        personvern.policy, subject, data.purposes, data.grantor, data.valid_from
    )
    recorded = RecordedConsent(**data.model_dump(), ends_by=ends_by)
    created, status = await consents.fetch(
        ConsentRead, "POST", "/api/v1/consents", caller, content=recorded.model_dump_json().encode()
    )
    return json_response(created, status)


@router.get(
    "/participants/{participant_id}/consents",
    tags=["consents"],
    response_model=ConsentList,
    responses=problem_responses(400, 404),
)
async def list_participants_consents(
    participant_id: uuid.UUID,
    caller: ConsentReader,
    purpose: PurposeDep,
    personvern: PersonvernDep,
    participants: ParticipantsDep,
    consents: ConsentUpstream,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """The consents about a participant you work with (audited like any read)."""
    answer = await participants.read(caller, participant_id)
    context = await personvern.context(
        caller, purpose, participant_id, answer.relationships, subject_of(answer.participant)
    )
    if gate_reason(personvern.policy, context) is not None:
        await personvern.record(context, participant_id, [])
        raise ParticipantNotFound()
    await personvern.record(
        context, participant_id, [whole_resource_decision(personvern.policy, "consents", purpose)]
    )
    params = page_params(limit, cursor)
    found, _ = await consents.fetch(
        ConsentList, "GET", f"/api/v1/participants/{participant_id}/consents", caller, params=params
    )
    return json_response(
        found.model_copy(update={"items": [_seen_by(caller, c) for c in found.items]})
    )


def _seen_by(caller: CallerContext, consent: ConsentRead) -> ConsentRead:
    """Who in another organisation recorded a consent, and where it keeps the proof, stay
    with that organisation (the participant sees both among their own consents)."""
    collection = consent.collection
    if collection.collected_by_orgnr in (None, caller.orgnr):
        return consent
    hidden = collection.model_copy(update={"collected_by_staff_id": None, "evidence": None})
    return consent.model_copy(update={"collection": hidden})


@router.get("/me/consents", tags=["me"], response_model=ConsentList)
async def list_my_consents(
    caller: CallerDep,
    consents: ConsentUpstream,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """Your consents: active, withdrawn and expired, with their history."""
    params = page_params(limit, cursor)
    found, _ = await consents.fetch(
        ConsentList, "GET", "/api/v1/me/consents", caller, params=params
    )
    return json_response(found)


@router.get(
    "/me/consents/{consent_id}",
    tags=["me"],
    response_model=ConsentRead,
    responses=problem_responses(404),
)
async def read_my_consent(
    consent_id: uuid.UUID, caller: CallerDep, consents: ConsentUpstream
) -> Response:
    """One of your consents, with its history."""
    found, _ = await consents.fetch(ConsentRead, "GET", f"/api/v1/me/consents/{consent_id}", caller)
    return json_response(found)


@router.post(
    "/me/consents/{consent_id}/withdraw",
    tags=["me"],
    response_model=ConsentRead,
    responses=problem_responses(404),
)
async def withdraw_my_consent(
    consent_id: uuid.UUID, caller: CallerDep, consents: ConsentUpstream
) -> Response:
    """Withdraw your consent: from the very next request on, nothing crosses on it."""
    withdrawn, _ = await consents.fetch(
        ConsentRead, "POST", f"/api/v1/me/consents/{consent_id}/withdraw", caller
    )
    return json_response(withdrawn)


async def _organisations_consent(
    personvern: PersonvernDep,
    participants: ParticipantClient,
    consents: Upstream,
    caller: CallerContext,
    consent_id: uuid.UUID,
) -> ConsentRead:
    """A consent naming the caller's organisation, about a participant the caller works
    with (for some purpose its role may declare); else the 404 of an unknown consent."""
    consent, _ = await consents.fetch(ConsentRead, "GET", f"/api/v1/consents/{consent_id}", caller)
    answer = await participants.read(caller, consent.participant_id)
    subject = subject_of(answer.participant)
    for purpose in allowed_purposes(personvern.policy, caller):
        if personvern.gate(caller, purpose, answer.relationships, subject) is None:
            return consent
    raise ConsentNotFound()


@router.post(
    "/consents/{consent_id}/withdraw",
    tags=["consents"],
    response_model=ConsentRead,
    responses=problem_responses(404),
)
async def withdraw_consent(
    consent_id: uuid.UUID,
    caller: ConsentWriter,
    personvern: PersonvernDep,
    participants: ParticipantsDep,
    consents: ConsentUpstream,
) -> Response:
    """Record a withdrawal the participant gave your organisation another way."""
    await _organisations_consent(personvern, participants, consents, caller, consent_id)
    withdrawn, _ = await consents.fetch(
        ConsentRead, "POST", f"/api/v1/consents/{consent_id}/withdraw", caller
    )
    return json_response(withdrawn)


@router.get(
    "/me/consents/{consent_id}/receipt",
    tags=["me"],
    response_model=ReceiptRead,
    responses=problem_responses(404),
)
async def my_consent_receipt(
    consent_id: uuid.UUID, caller: CallerDep, consents: ConsentUpstream
) -> Response:
    """A signed receipt of your consent, to keep or show to anyone."""
    found, _ = await consents.fetch(
        ReceiptRead, "GET", f"/api/v1/me/consents/{consent_id}/receipt", caller
    )
    return json_response(found)


@router.get(
    "/consents/{consent_id}/receipt",
    tags=["consents"],
    response_model=ReceiptRead,
    responses=problem_responses(404),
)
async def consent_receipt(
    consent_id: uuid.UUID,
    caller: ConsentReader,
    personvern: PersonvernDep,
    participants: ParticipantsDep,
    consents: ConsentUpstream,
) -> Response:
    """A signed receipt of a consent naming your organisation, about a participant you
    work with."""
    await _organisations_consent(personvern, participants, consents, caller, consent_id)
    found, _ = await consents.fetch(
        ReceiptRead, "GET", f"/api/v1/consents/{consent_id}/receipt", caller
    )
    return json_response(found)


@well_known.get("/consent-receipt-keys.json", tags=["consents"])
async def consent_receipt_keys(consents: ConsentUpstream) -> Response:
    """The keys that verify consent receipts (JWKS, with validity periods); no token needed."""
    response = await consents.call("GET", "/api/v1/receipt-keys", GATEWAY_ITSELF)
    return Response(response.content, media_type="application/json")


@router.get("/legal-bases", tags=["consents"], response_model=LegalBasisList)
async def list_legal_bases(caller: AnyOrganisation, consents: ConsentUpstream) -> Response:
    """The legal-basis registry: the references the policy's `legal:<ref>` flows may name."""
    found, _ = await consents.fetch(LegalBasisList, "GET", "/api/v1/legal-bases", caller)
    return json_response(found)
