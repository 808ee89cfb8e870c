"""Wire models of the consent service. The gateway parses the service's answers into these
same models, so the contract is written once.

Names follow ISO/IEC TS 27560 and FHIR Consent where they fit (see models.py). Parties
(`disclosers`, `recipients`) are agency types or organisation numbers: "NAV and the school
may exchange information about me" is one consent with both in both lists.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Grantor = Literal["participant", "guardian", "representative"]
GrantorRelation = Literal["self", "parent", "guardian", "representative", "other"]
Language = Literal["nb", "nn", "en"]
ConsentStatus = Literal["active", "withdrawn", "expired", "superseded"]
RequestStatus = Literal["pending", "accepted", "declined"]
CollectionMethod = Literal["digital", "paper", "verbal", "digital_external"]

# An agency type (`nav`, `skole`, ...) or a nine-digit organisation number.
Party = Annotated[str, StringConstraints(pattern=r"^([a-z]{2,20}|\d{9})$")]
# Purposes and categories are the policy's words; the gateway checks them against it.
Term = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]{0,59}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
NoticeVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")]
NoticeHash = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scope(_Body):
    """What a consent covers: who may disclose, who may receive, for what, which data."""

    disclosers: list[Party] = Field(min_length=1, max_length=20)
    recipients: list[Party] = Field(min_length=1, max_length=20)
    purposes: list[Term] = Field(min_length=1, max_length=10)
    categories: list[Term] = Field(min_length=1, max_length=20)
    valid_to: AwareDatetime | None = Field(None, description="Open-ended when absent.")


class ConsentRequestCreate(Scope):
    participant_id: uuid.UUID
    justification: Text = Field(
        description="Why you ask, in plain language: the participant reads it before answering."
    )
    notice_version: NoticeVersion = Field(
        "broen-samtykke-1", description="The version of the consent notice shown with it."
    )
    notice_language: Language = "nb"


class Requester(BaseModel):
    orgnr: str
    staff_id: str | None = None


class ConsentRequestRead(BaseModel):
    id: uuid.UUID
    participant_id: uuid.UUID
    requester: Requester
    disclosers: list[str]
    recipients: list[str]
    purposes: list[str]
    categories: list[str]
    valid_to: datetime | None
    justification: str
    notice_version: str
    notice_language: Language
    status: RequestStatus
    created_at: datetime
    answered_at: datetime | None = None
    consent_id: uuid.UUID | None = None


class ConsentRequestList(BaseModel):
    items: list[ConsentRequestRead]
    next_cursor: str | None = None


class Notice(BaseModel):
    """The notice the grantor was shown: its version, the hash of its text, its language."""

    model_config = ConfigDict(extra="forbid")

    version: NoticeVersion
    hash: NoticeHash
    language: Language


class ConsentRecordCreate(Scope):
    """A consent given outside Broen (on paper, orally), recorded by the disclosing side."""

    participant_id: uuid.UUID
    grantor: Grantor = "participant"
    grantor_relation: GrantorRelation = "self"
    valid_from: AwareDatetime | None = Field(None, description="Defaults to now.")
    collection_method: Literal["paper", "verbal", "digital_external"]
    evidence: Text = Field(
        description="Where the proof is kept, e.g. the archive reference of the signed form."
    )
    notice: Notice


class Collection(BaseModel):
    method: CollectionMethod
    collected_by_orgnr: str | None = None
    collected_by_staff_id: str | None = None
    evidence: str | None = None


class HistoryEntry(BaseModel):
    type: str
    at: datetime
    actor: str


class Grant(BaseModel):
    """A consent in force or to come, as the policy decision reads it."""

    id: uuid.UUID
    grantor: Grantor
    disclosers: list[str]
    recipients: list[str]
    purposes: list[str]
    categories: list[str]
    valid_from: datetime
    valid_to: datetime | None


class ConsentRead(Grant):
    """A consent with who it is about, who it is given to, its state and its history."""

    participant_id: uuid.UUID
    grantor_relation: GrantorRelation
    controllers: list[str]
    status: ConsentStatus
    notice: Notice
    collection: Collection
    request_id: uuid.UUID | None = None
    created_at: datetime
    withdrawn_at: datetime | None = None
    history: list[HistoryEntry]


class ConsentList(BaseModel):
    items: list[ConsentRead]
    next_cursor: str | None = None


class RequestAnswer(_Body):
    """Accepting a request (the body is optional)."""

    language: Language | None = Field(None, description="The language the notice was read in.")


class Acceptance(RequestAnswer):
    """What the gateway adds when it passes an acceptance on: who grants, and when a
    guardian's consent ends (the participant's 18th birthday)."""

    grantor: Grantor
    grantor_relation: GrantorRelation
    ends_by: AwareDatetime | None = None


class RecordedConsent(ConsentRecordCreate):
    """A recorded consent as the gateway passes it on, with when a guardian's consent ends."""

    ends_by: AwareDatetime | None = None


# --- for the gateway's decisions --------------------------------------------------------


class GrantsQuery(_Body):
    participant_ids: list[uuid.UUID] = Field(min_length=1, max_length=500)


# The reference a policy's `legal:<ref>` flow names.
LegalRef = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,79}$")]


class LegalBasisWrite(_Body):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    citation: Text = Field(description="The provision's text or its citation.")
    valid_from: AwareDatetime
    valid_to: AwareDatetime | None = None


class LegalBasisRead(BaseModel):
    ref: str
    title: str
    citation: str
    valid_from: datetime
    valid_to: datetime | None
    updated_at: datetime


class LegalBasisList(BaseModel):
    items: list[LegalBasisRead]


class GrantsAnswer(BaseModel):
    """Per participant asked about, the consents not withdrawn (a participant without any is
    absent); and every registered legal basis."""

    consents: dict[uuid.UUID, list[Grant]]
    legal_bases: list[LegalBasisRead]


class ReceiptRead(BaseModel):
    consent_id: uuid.UUID
    receipt: str = Field(
        description="A JWT (compact JWS) signed with Broen's receipt keys, published at "
        "/.well-known/consent-receipt-keys.json; it states the consent as it stands now."
    )
