"""The words every part of Broen must agree on: agency types (DOMAIN.md) and
adressebeskyttelse levels. Organisations, units and staff are data; these are not."""

from __future__ import annotations

from typing import Literal

AgencyType = Literal[
    "nav", "fylkeskommune", "skole", "kommune", "tiltaksarrangor", "laerebedrift", "helse"
]
AGENCY_TYPES: tuple[str, ...] = AgencyType.__args__  # type: ignore[attr-defined]

Adressebeskyttelse = Literal["fortrolig", "strengt_fortrolig", "strengt_fortrolig_utland"]

# Staff roles: assignments, the policy and message routing all use these words.
Role = Literal[
    "kontaktlaerer",
    "faglaerer",
    "veileder",
    "kontaktperson",
    "opplaeringskoordinator",
    "ot_radgiver",
    # Neither reads participants: the auditor reads the audit log, both the statistics.
    "auditor",
    "trial_lead",
]
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]

# Data categories (DOMAIN.md): every field of a resource or event payload belongs to one,
# and the category decides whether it may cross from its owner agency to another.
Category = Literal[
    "identity.basic",
    "identity.national_id",
    "contact",
    "address",
    "enrolment",
    "attendance",
    "progress",
    "risk",
    "nav.followup",
    "nav.measure",
    "nav.benefits",
    "health.diagnosis",
    "health.adjustment",
    "apprenticeship",
    "messages",
]
CATEGORIES: tuple[str, ...] = Category.__args__  # type: ignore[attr-defined]

# Who sees a unit's inbox: messages addressed to the unit, or to a role that only the unit
# holds (no person assigned yet), reach its contact person or opplæringskoordinator.
UNIT_INBOX_ROLES: tuple[str, ...] = ("kontaktperson", "opplaeringskoordinator")
