"""Plain factories for policy tests: organisations, callers, participants, consents."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gateway.policy import Consent, Context, Grants, Subject
from services.participant.schemas import Address, ParticipantRead, Provenance
from shared.internal_auth import CallerContext

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NAV_ORG, SCHOOL_ORG, COUNTY_ORG, KOMMUNE_ORG = "910000001", "910000002", "910000003", "910000004"
AGENCY_OF = {
    NAV_ORG: "nav",
    SCHOOL_ORG: "skole",
    COUNTY_ORG: "fylkeskommune",
    KOMMUNE_ORG: "kommune",
}
ADULT = date(2000, 5, 17)


def staff(orgnr: str, *roles: str, skjermet_authorised: bool = False) -> CallerContext:
    return CallerContext(
        kind="staff",
        orgnr=orgnr,
        agency_type=AGENCY_OF[orgnr],
        staff_id=str(uuid.uuid4()),
        unit_id=str(uuid.uuid4()),
        roles=roles,
        skjermet_authorised=skjermet_authorised,
    )


def system(orgnr: str) -> CallerContext:
    return CallerContext(kind="system", client_id="sis", orgnr=orgnr, agency_type=AGENCY_OF[orgnr])


def kontaktlaerer() -> CallerContext:
    return staff(SCHOOL_ORG, "kontaktlaerer")


def veileder() -> CallerContext:
    return staff(NAV_ORG, "veileder")


def participant(
    owners: dict[str, str] | None = None,
    *,
    birth_date: date = ADULT,
    adressebeskyttelse: str | None = None,
    skjermet: bool | None = None,
) -> ParticipantRead:
    """A participant whose fields are held by the given organisations (field -> orgnr)."""
    owners = owners or {}
    values: dict[str, Any] = {
        "name": "Kari Nordmann",
        "birth_date": birth_date,
        "phone": "+47 99999999",
        "email": "kari@example.test",
        "address": Address(street="Gate 1", postal_code="0150", city="Oslo"),
        "adressebeskyttelse": adressebeskyttelse,
        "skjermet": skjermet,
    }
    held = {f: v for f, v in values.items() if f in owners and v is not None}
    # The birth date is known from the national id, even where its holder is not named here.
    values = {**held, "birth_date": birth_date}
    return ParticipantRead(
        id=uuid.uuid4(),
        provenance={
            f: Provenance(
                owner_orgnr=owners[f],
                owner_agency_type=AGENCY_OF[owners[f]],  # type: ignore[arg-type]
                source_system="test",
                verification="verified",
                recorded_at=NOW,
            )
            for f in held
        },
        **values,
    )


def consent(
    *,
    id: str = "c-1",
    grantor: str = "participant",
    disclosers: tuple[str, ...] = ("nav", "skole"),
    recipients: tuple[str, ...] = ("nav", "skole"),
    categories: tuple[str, ...] = ("identity.basic", "contact"),
    purposes: tuple[str, ...] = ("oppfolging",),
    days: int = 365,
    valid_from: datetime | None = None,
) -> Consent:
    return Consent(
        id=id,
        grantor=grantor,  # type: ignore[arg-type]
        disclosers=frozenset(disclosers),
        recipients=frozenset(recipients),
        categories=frozenset(categories),
        purposes=frozenset(purposes),
        valid_from=valid_from or NOW - timedelta(days=1),
        valid_to=NOW + timedelta(days=days),
    )


def context(
    caller: CallerContext,
    person: ParticipantRead | None = None,
    *,
    purpose: str = "oppfolging",
    relationships: tuple[str, ...] = ("assigned",),
    grants: Grants | None = None,
    subject: Subject | None = None,
) -> Context:
    if subject is None:
        assert person is not None
        subject = Subject(person.adressebeskyttelse, bool(person.skjermet), person.birth_date)
    return Context(caller, purpose, frozenset(relationships), subject, grants or Grants(), NOW)
