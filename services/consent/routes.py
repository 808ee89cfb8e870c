"""Routes of the consent service, behind the gateway (which checks scopes, the policy's
terms, who may grant, and whether the caller may see the participant before it calls).
`/api/v1/me/...` acts for the participant of a citizen token."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request

from services.consent import service, store
from services.consent.receipts import ReceiptKeys, receipt_claims, sign_receipt
from services.consent.schemas import (
    Acceptance,
    ConsentList,
    ConsentRead,
    ConsentRequestCreate,
    ConsentRequestList,
    ConsentRequestRead,
    GrantsAnswer,
    GrantsQuery,
    LegalBasisList,
    LegalBasisRead,
    ReceiptRead,
    RecordedConsent,
)
from shared.app import KeyringDep
from shared.crypto import Keyring
from shared.db import SessionDep
from shared.internal_auth import CallerContext, CallerDep, require_internal_caller
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit, moment_after, next_cursor
from shared.problems import Forbidden, problem_responses

router = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(require_internal_caller)],
    responses=problem_responses(401, 403, 404, 409, 422),
)
internal = APIRouter(prefix="/internal/v1", dependencies=[Depends(require_internal_caller)])


class NotACitizen(Forbidden):
    type = "citizen-token-required"
    title = "A citizen token is required"


class NotAnOrganisation(Forbidden):
    type = "organisation-token-required"
    title = "An organisation's token is required"


async def citizen(caller: CallerDep) -> uuid.UUID:
    """The participant a citizen token acts for."""
    if caller.kind != "citizen" or caller.participant_id is None:
        raise NotACitizen("Only the participant reaches /api/v1/me/....")
    return uuid.UUID(caller.participant_id)


async def organisation(caller: CallerDep) -> CallerContext:
    if caller.kind not in ("system", "staff") or not caller.orgnr:
        raise NotAnOrganisation("This route acts for an organisation.")
    return caller


Me = Annotated[uuid.UUID, Depends(citizen)]
Organisation = Annotated[CallerContext, Depends(organisation)]


# --- requests ------------------------------------------------------------------------------


@router.post("/consent-requests", status_code=201)
async def create_request(
    data: ConsentRequestCreate, session: SessionDep, keyring: KeyringDep, caller: Organisation
) -> ConsentRequestRead:
    return await service.create_request(session, keyring, caller, data)


@router.get("/me/consent-requests")
async def list_my_requests(
    session: SessionDep,
    keyring: KeyringDep,
    me: Me,
    status: Literal["pending", "accepted", "declined"] | None = "pending",
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ConsentRequestList:
    found = await store.list_requests(
        session, participant_id=me, status=status, after=moment_after(cursor), limit=limit
    )
    return ConsentRequestList(
        items=await service.read_requests(session, keyring, found),
        next_cursor=next_cursor(found, limit, "created_at"),
    )


@router.get("/me/consent-requests/{request_id}")
async def read_my_request(
    request_id: uuid.UUID, session: SessionDep, keyring: KeyringDep, me: Me
) -> ConsentRequestRead:
    request = await service.participants_request(session, me, request_id)
    [read] = await service.read_requests(session, keyring, [request])
    return read


@router.post("/me/consent-requests/{request_id}/accept", status_code=201)
async def accept_request(
    request_id: uuid.UUID,
    answer: Acceptance,
    session: SessionDep,
    keyring: KeyringDep,
    me: Me,
    caller: CallerDep,
) -> ConsentRead:
    request = await service.participants_request(session, me, request_id)
    return await service.accept(session, keyring, caller, request, answer)


@router.post("/me/consent-requests/{request_id}/decline")
async def decline_request(
    request_id: uuid.UUID, session: SessionDep, keyring: KeyringDep, me: Me
) -> ConsentRequestRead:
    request = await service.participants_request(session, me, request_id)
    return await service.decline(session, keyring, request)


# --- consents ------------------------------------------------------------------------------


@router.post("/consents", status_code=201)
async def record_consent(
    data: RecordedConsent, session: SessionDep, keyring: KeyringDep, caller: Organisation
) -> ConsentRead:
    return await service.record(session, keyring, caller, data)


@router.get("/participants/{participant_id}/consents")
async def list_participants_consents(
    participant_id: uuid.UUID,
    session: SessionDep,
    keyring: KeyringDep,
    _: Organisation,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ConsentList:
    return await _consent_page(session, keyring, participant_id, limit, cursor)


@router.get("/me/consents")
async def list_my_consents(
    session: SessionDep,
    keyring: KeyringDep,
    me: Me,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> ConsentList:
    return await _consent_page(session, keyring, me, limit, cursor)


async def _consent_page(
    session: SessionDep, keyring: Keyring, participant_id: uuid.UUID, limit: int, cursor: str | None
) -> ConsentList:
    found = await store.list_consents(
        session, participant_id=participant_id, after=moment_after(cursor), limit=limit
    )
    return ConsentList(
        items=await service.read_consents(session, keyring, found),
        next_cursor=next_cursor(found, limit, "created_at"),
    )


@router.get("/me/consents/{consent_id}")
async def read_my_consent(
    consent_id: uuid.UUID, session: SessionDep, keyring: KeyringDep, me: Me
) -> ConsentRead:
    consent = await service.participants_consent(session, me, consent_id)
    return await service.read_consent(session, keyring, consent)


@router.post("/me/consents/{consent_id}/withdraw")
async def withdraw_my_consent(
    consent_id: uuid.UUID, session: SessionDep, keyring: KeyringDep, me: Me, caller: CallerDep
) -> ConsentRead:
    consent = await service.participants_consent(session, me, consent_id)
    return await service.withdraw(session, keyring, caller, consent)


@router.get("/consents/{consent_id}")
async def read_consent(
    consent_id: uuid.UUID, session: SessionDep, keyring: KeyringDep, caller: Organisation
) -> ConsentRead:
    consent = await service.organisations_consent(session, caller, consent_id)
    return await service.read_consent(session, keyring, consent)


@router.post("/consents/{consent_id}/withdraw")
async def withdraw_consent(
    consent_id: uuid.UUID, session: SessionDep, keyring: KeyringDep, caller: Organisation
) -> ConsentRead:
    consent = await service.organisations_consent(session, caller, consent_id)
    return await service.withdraw(session, keyring, caller, consent)


# --- receipts ------------------------------------------------------------------------------


def _receipt(request: Request, consent: ConsentRead) -> ReceiptRead:
    keys: ReceiptKeys = request.app.state.receipt_keys
    settings = request.app.state.settings
    claims = receipt_claims(
        consent,
        issuer=settings.receipt_issuer,
        now=service.now_utc(),
        policy_url=settings.privacy_policy_url,
    )
    return ReceiptRead(consent_id=consent.id, receipt=sign_receipt(keys, claims))


@router.get("/me/consents/{consent_id}/receipt")
async def my_receipt(
    consent_id: uuid.UUID, request: Request, session: SessionDep, keyring: KeyringDep, me: Me
) -> ReceiptRead:
    consent = await service.participants_consent(session, me, consent_id)
    return _receipt(request, await service.read_consent(session, keyring, consent))


@router.get("/consents/{consent_id}/receipt")
async def receipt(
    consent_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    keyring: KeyringDep,
    caller: Organisation,
) -> ReceiptRead:
    consent = await service.organisations_consent(session, caller, consent_id)
    return _receipt(request, await service.read_consent(session, keyring, consent))


@router.get("/receipt-keys")
async def receipt_keys(request: Request) -> dict[str, Any]:
    """The public receipt keys with their validity periods (a JWKS)."""
    keys: ReceiptKeys = request.app.state.receipt_keys
    return keys.public_jwks()


# --- legal bases and grants ----------------------------------------------------------------


@router.get("/legal-bases")
async def list_legal_bases(session: SessionDep) -> LegalBasisList:
    bases = await store.legal_bases(session)
    return LegalBasisList(
        items=[LegalBasisRead.model_validate(b, from_attributes=True) for b in bases]
    )


@internal.post("/grants")
async def read_grants(query: GrantsQuery, session: SessionDep) -> GrantsAnswer:
    """The consents not withdrawn and the legal bases, for the gateway's decisions."""
    return await service.grants(session, query.participant_ids)
