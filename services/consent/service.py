"""Consents and consent requests: giving, recording, withdrawing, reading, and the grants
the gateway's decisions read.

What depends on the personvern policy (which purposes and categories exist, who may grant
at the participant's age, whether the caller may see the participant) is checked by the
gateway before it calls; this service keeps the records, their history and their events.
Free text (a request's justification, a recorded consent's evidence) is sealed with the
participant's data key here.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.consent import store
from services.consent.errors import ConsentNotFound, ConsentRequestNotFound, RequestAlreadyAnswered
from services.consent.models import (
    Consent,
    ConsentHistory,
    ConsentRequest,
    LegalBasis,
    OutboxEvent,
    ParticipantKey,
)
from services.consent.schemas import (
    Acceptance,
    Collection,
    ConsentRead,
    ConsentRequestCreate,
    ConsentRequestRead,
    Grant,
    GrantsAnswer,
    HistoryEntry,
    LegalBasisRead,
    LegalBasisWrite,
    Notice,
    RecordedConsent,
    Requester,
)
from shared.crypto import Keyring
from shared.data_keys import open_text, participant_data_key, seal_text
from shared.events import make_event
from shared.internal_auth import CallerContext
from shared.outbox import record_event

EVENT_SOURCE = "/broen/consent"


def now_utc() -> datetime:
    return datetime.now(UTC)


def actor_of(caller: CallerContext) -> str:
    """Who acted, as the history records it: ids only, never a name."""
    if caller.kind == "citizen":
        return caller.acting_as or "participant"
    if caller.staff_id:
        return f"{caller.orgnr}/{caller.staff_id}"
    return f"{caller.orgnr}"


async def _event(
    session: AsyncSession, type: str, participant_id: uuid.UUID, data: dict[str, object]
) -> None:
    """A domain event in the current transaction; ids and policy terms only."""
    await record_event(
        session,
        OutboxEvent,
        make_event(EVENT_SOURCE, type, subject=str(participant_id), data=data),
    )


# --- sealing free text -------------------------------------------------------------------


async def _data_key(session: AsyncSession, keyring: Keyring, participant_id: uuid.UUID) -> bytes:
    return await participant_data_key(session, keyring, ParticipantKey, participant_id)


async def _data_keys(
    session: AsyncSession, keyring: Keyring, participant_ids: set[uuid.UUID]
) -> dict[uuid.UUID, bytes]:
    """Each participant's data key, once (a page usually holds one participant's rows)."""
    return {pid: await _data_key(session, keyring, pid) for pid in participant_ids}


# --- requests ----------------------------------------------------------------------------


async def create_request(
    session: AsyncSession, keyring: Keyring, caller: CallerContext, data: ConsentRequestCreate
) -> ConsentRequestRead:
    key = await _data_key(session, keyring, data.participant_id)
    request_id = uuid.uuid4()
    request = ConsentRequest(
        id=request_id,
        participant_id=data.participant_id,
        requester_orgnr=caller.orgnr,
        requester_staff_id=caller.staff_id,
        disclosers=list(data.disclosers),
        recipients=list(data.recipients),
        purposes=list(data.purposes),
        categories=list(data.categories),
        valid_to=data.valid_to,
        justification_sealed=seal_text(
            key, "consent_requests", "justification", request_id, data.justification
        ),
        notice_version=data.notice_version,
        notice_language=data.notice_language,
        status="pending",
        created_at=now_utc(),
    )
    await store.add(session, request)
    await _event(
        session,
        "consent.requested",
        data.participant_id,
        {"request_id": str(request_id), "requester_orgnr": caller.orgnr},
    )
    return _request_read(request, data.justification)


def _request_read(request: ConsentRequest, justification: str) -> ConsentRequestRead:
    return ConsentRequestRead(
        id=request.id,
        participant_id=request.participant_id,
        requester=Requester(orgnr=request.requester_orgnr, staff_id=request.requester_staff_id),
        disclosers=request.disclosers,
        recipients=request.recipients,
        purposes=request.purposes,
        categories=request.categories,
        valid_to=request.valid_to,
        justification=justification,
        notice_version=request.notice_version,
        notice_language=request.notice_language,
        status=request.status,
        created_at=request.created_at,
        answered_at=request.answered_at,
        consent_id=request.consent_id,
    )


async def read_requests(
    session: AsyncSession, keyring: Keyring, requests: Sequence[ConsentRequest]
) -> list[ConsentRequestRead]:
    keys = await _data_keys(session, keyring, {r.participant_id for r in requests})
    return [
        _request_read(
            r,
            open_text(
                keys[r.participant_id],
                "consent_requests",
                "justification",
                r.id,
                r.justification_sealed,
            ),
        )
        for r in requests
    ]


async def participants_request(
    session: AsyncSession, participant_id: uuid.UUID, request_id: uuid.UUID
) -> ConsentRequest:
    """The participant's own request, or the same 404 as for an unknown one."""
    request = await store.get_request(session, request_id)
    if request is None or request.participant_id != participant_id:
        raise ConsentRequestNotFound()
    return request


def notice_hash(request: ConsentRequest, justification: str, language: str) -> str:
    """The hash of the notice as shown: what is asked, by whom, why, in which version."""
    shown = {
        "version": request.notice_version,
        "language": language,
        "requester": request.requester_orgnr,
        "disclosers": request.disclosers,
        "recipients": request.recipients,
        "purposes": request.purposes,
        "categories": request.categories,
        "valid_to": request.valid_to.isoformat() if request.valid_to else None,
        "justification": justification,
    }
    canonical = json.dumps(shown, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


async def accept(
    session: AsyncSession,
    keyring: Keyring,
    caller: CallerContext,
    request: ConsentRequest,
    answer: Acceptance,
) -> ConsentRead:
    """The request becomes a consent. Accepting again returns the same consent."""
    if request.status == "accepted" and request.consent_id is not None:
        return await read_consent(session, keyring, await _consent(session, request.consent_id))
    if request.status != "pending":
        raise RequestAlreadyAnswered(request.status)
    key = await _data_key(session, keyring, request.participant_id)
    justification = open_text(
        key, "consent_requests", "justification", request.id, request.justification_sealed
    )
    language = answer.language or request.notice_language
    now = now_utc()
    consent = Consent(
        id=uuid.uuid4(),
        participant_id=request.participant_id,
        grantor=answer.grantor,
        grantor_relation=answer.grantor_relation,
        controllers=[request.requester_orgnr],
        disclosers=request.disclosers,
        recipients=request.recipients,
        purposes=request.purposes,
        categories=request.categories,
        valid_from=now,
        valid_to=_earliest(request.valid_to, answer.ends_by),
        status="active",
        notice_version=request.notice_version,
        notice_hash=notice_hash(request, justification, language),
        notice_language=language,
        collection_method="digital",
        collected_by_orgnr=None,
        collected_by_staff_id=None,
        evidence_sealed=None,
        request_id=request.id,
        created_at=now,
        withdrawn_at=None,
    )
    await store.add(
        session,
        consent,
        ConsentHistory(consent_id=consent.id, type="given", at=now, actor=answer.grantor),
    )
    if not await store.answer_request(
        session, request.id, status="accepted", at=now, consent_id=consent.id
    ):
        raise RequestAlreadyAnswered("answered meanwhile")
    await _event(session, "consent.given", consent.participant_id, _event_data(consent))
    return await read_consent(session, keyring, consent)


async def decline(
    session: AsyncSession, keyring: Keyring, request: ConsentRequest
) -> ConsentRequestRead:
    """Declining again returns the same state."""
    if request.status == "pending":
        now = now_utc()
        if not await store.answer_request(
            session, request.id, status="declined", at=now, consent_id=None
        ):
            raise RequestAlreadyAnswered("answered meanwhile")
        request.status, request.answered_at = "declined", now
        await _event(
            session,
            "consent.request_declined",
            request.participant_id,
            {"request_id": str(request.id), "requester_orgnr": request.requester_orgnr},
        )
    elif request.status != "declined":
        raise RequestAlreadyAnswered(request.status)
    [read] = await read_requests(session, keyring, [request])
    return read


def _earliest(first: datetime | None, second: datetime | None) -> datetime | None:
    present = [moment for moment in (first, second) if moment is not None]
    return min(present) if present else None


# --- consents ----------------------------------------------------------------------------


async def record(
    session: AsyncSession, keyring: Keyring, caller: CallerContext, data: RecordedConsent
) -> ConsentRead:
    """A consent given outside Broen, recorded by staff of the disclosing organisation."""
    now = now_utc()
    consent_id = uuid.uuid4()
    key = await _data_key(session, keyring, data.participant_id)
    consent = Consent(
        id=consent_id,
        participant_id=data.participant_id,
        grantor=data.grantor,
        grantor_relation=data.grantor_relation,
        controllers=[caller.orgnr],
        disclosers=list(data.disclosers),
        recipients=list(data.recipients),
        purposes=list(data.purposes),
        categories=list(data.categories),
        valid_from=data.valid_from or now,
        valid_to=_earliest(data.valid_to, data.ends_by),
        status="active",
        notice_version=data.notice.version,
        notice_hash=data.notice.hash,
        notice_language=data.notice.language,
        collection_method=data.collection_method,
        collected_by_orgnr=caller.orgnr,
        collected_by_staff_id=caller.staff_id,
        evidence_sealed=seal_text(key, "consents", "evidence", consent_id, data.evidence),
        request_id=None,
        created_at=now,
        withdrawn_at=None,
    )
    await store.add(
        session,
        consent,
        ConsentHistory(consent_id=consent_id, type="recorded", at=now, actor=actor_of(caller)),
    )
    # The participant is told: it shows among their consents, and the event says so.
    await _event(session, "consent.recorded", consent.participant_id, _event_data(consent))
    return await read_consent(session, keyring, consent)


async def _consent(session: AsyncSession, consent_id: uuid.UUID) -> Consent:
    consent = await store.get_consent(session, consent_id)
    if consent is None:
        raise ConsentNotFound()
    return consent


async def participants_consent(
    session: AsyncSession, participant_id: uuid.UUID, consent_id: uuid.UUID
) -> Consent:
    consent = await store.get_consent(session, consent_id)
    if consent is None or consent.participant_id != participant_id:
        raise ConsentNotFound()
    return consent


def names(consent: Consent, caller: CallerContext) -> bool:
    """Whether the consent names the caller's organisation (as controller or party)."""
    parties = {*consent.controllers, *consent.disclosers, *consent.recipients}
    return caller.orgnr in parties or (caller.agency_type or "") in parties


async def organisations_consent(
    session: AsyncSession, caller: CallerContext, consent_id: uuid.UUID
) -> Consent:
    """A consent that names the caller's organisation, or the 404 of an unknown one."""
    consent = await store.get_consent(session, consent_id)
    if consent is None or not names(consent, caller):
        raise ConsentNotFound()
    return consent


async def withdraw(
    session: AsyncSession, keyring: Keyring, caller: CallerContext, consent: Consent
) -> ConsentRead:
    """Withdraw the consent from now on; withdrawing again returns the same state."""
    if consent.status == "active":
        now = now_utc()
        if await store.withdraw(session, consent.id, at=now):
            consent.status, consent.withdrawn_at = "withdrawn", now
            await store.add(
                session,
                ConsentHistory(
                    consent_id=consent.id, type="withdrawn", at=now, actor=actor_of(caller)
                ),
            )
            # Recipients are told (delivery comes with the events issue).
            await _event(session, "consent.withdrawn", consent.participant_id, _event_data(consent))
        else:
            await session.refresh(consent)
    return await read_consent(session, keyring, consent)


def _event_data(consent: Consent) -> dict[str, object]:
    return {
        "consent_id": str(consent.id),
        "participant_id": str(consent.participant_id),
        "disclosers": consent.disclosers,
        "recipients": consent.recipients,
        "purposes": consent.purposes,
        "categories": consent.categories,
    }


def status_of(consent: Consent, now: datetime) -> str:
    if consent.status == "active" and consent.valid_to is not None and consent.valid_to <= now:
        return "expired"
    return consent.status


async def read_consents(
    session: AsyncSession, keyring: Keyring, consents: Sequence[Consent]
) -> list[ConsentRead]:
    keys = await _data_keys(session, keyring, {c.participant_id for c in consents})
    histories = await store.history(session, [c.id for c in consents])
    now = now_utc()
    return [_consent_read(c, keys[c.participant_id], histories[c.id], now) for c in consents]


async def read_consent(session: AsyncSession, keyring: Keyring, consent: Consent) -> ConsentRead:
    [read] = await read_consents(session, keyring, [consent])
    return read


def _consent_read(
    consent: Consent, key: bytes, history: list[ConsentHistory], now: datetime
) -> ConsentRead:
    evidence = (
        open_text(key, "consents", "evidence", consent.id, consent.evidence_sealed)
        if consent.evidence_sealed is not None
        else None
    )
    return ConsentRead(
        id=consent.id,
        participant_id=consent.participant_id,
        grantor=consent.grantor,
        grantor_relation=consent.grantor_relation,
        controllers=consent.controllers,
        disclosers=consent.disclosers,
        recipients=consent.recipients,
        purposes=consent.purposes,
        categories=consent.categories,
        valid_from=consent.valid_from,
        valid_to=consent.valid_to,
        status=status_of(consent, now),
        notice=Notice(
            version=consent.notice_version,
            hash=consent.notice_hash,
            language=consent.notice_language,
        ),
        collection=Collection(
            method=consent.collection_method,
            collected_by_orgnr=consent.collected_by_orgnr,
            collected_by_staff_id=consent.collected_by_staff_id,
            evidence=evidence,
        ),
        request_id=consent.request_id,
        created_at=consent.created_at,
        withdrawn_at=consent.withdrawn_at,
        history=[HistoryEntry(type=h.type, at=h.at, actor=h.actor) for h in history],
    )


# --- for the gateway's decisions ---------------------------------------------------------


async def grants(session: AsyncSession, participant_ids: Sequence[uuid.UUID]) -> GrantsAnswer:
    found: dict[uuid.UUID, list[Grant]] = {}
    for consent in await store.active_consents(session, participant_ids):
        found.setdefault(consent.participant_id, []).append(
            Grant(
                id=consent.id,
                grantor=consent.grantor,
                disclosers=consent.disclosers,
                recipients=consent.recipients,
                purposes=consent.purposes,
                categories=consent.categories,
                valid_from=consent.valid_from,
                valid_to=consent.valid_to,
            )
        )
    bases = [
        LegalBasisRead.model_validate(b, from_attributes=True)
        for b in await store.legal_bases(session)
    ]
    return GrantsAnswer(consents=found, legal_bases=bases)


# --- the legal-basis registry (the platform operator's) ------------------------------------


async def register_legal_basis(
    session: AsyncSession, ref: str, data: LegalBasisWrite, *, operator: str
) -> LegalBasisRead:
    """Create or change a legal basis; the change and the operator go to the registry's
    trail. Only the operator's CLI calls this: no organisation's scope reaches it."""
    now = now_utc()
    basis = LegalBasis(
        ref=ref,
        title=data.title,
        citation=data.citation,
        valid_from=data.valid_from,
        valid_to=data.valid_to,
        updated_at=now,
    )
    await store.put_legal_basis(session, basis, change=data.model_dump(mode="json"), by=operator)
    return LegalBasisRead.model_validate(basis, from_attributes=True)
