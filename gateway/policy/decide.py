"""The personvern decision: for one caller, purpose and participant, release or withhold each
field, with the precise reason and the rule that decided.

Pure and deterministic: everything it needs is in the request (the time too), it reads no
clock, no file and no network, and the same request always gets the same decision. The
order of the checks is the one `default.toml` describes at its top.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

from gateway.policy.consents import Consent, Grants
from gateway.policy.document import Policy, Rule
from shared.internal_auth import CallerContext
from shared.problems import Problem

PURPOSE_HEADER = "Broen-Purpose"

# Reasons. Released fields carry how they were released, withheld ones why not.
OWN_ORGANISATION = "own_organisation"
CONSENT = "consent"
LEGAL_BASIS = "legal_basis"
UNKNOWN_FIELD = "unknown_field"
UNKNOWN_CATEGORY = "unknown_category"
NEVER = "never"
PURPOSE_NOT_ALLOWED = "purpose_not_allowed"
NO_RELATIONSHIP = "no_relationship"
SKJERMET = "skjermet"
PROTECTED = "protected"
NO_RULE = "no_rule"  # no flow rule covers this crossing for this purpose
NO_LEGAL_BASIS = "no_legal_basis"  # only legal bases could, and none is in force
NO_CONSENT = "no_consent"
CONSENT_UNAVAILABLE = "consent_unavailable"
NO_VALUE = "no_value"  # nothing held; shown like a value held by another organisation
# What a caller is told about a field another organisation holds (API.md).
NOT_SHARED = "not_shared"

ROUTING_HANDLE = "routing_handle"


class Owner(NamedTuple):
    """The organisation holding a value (ParticipantRead.provenance, a record's orgnr)."""

    orgnr: str
    agency_type: str


@dataclass(frozen=True, slots=True)
class Subject:
    """What the policy needs to know about the participant: flags and birth date."""

    adressebeskyttelse: str | None = None
    skjermet: bool = False
    birth_date: date | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """One caller asking about one participant, for one purpose, at one moment."""

    caller: CallerContext
    purpose: str
    relationships: frozenset[str]
    subject: Subject
    grants: Grants
    now: datetime


@dataclass(frozen=True, slots=True)
class DecisionRequest:
    context: Context
    resource: str
    # Every field of the resource's schema, with who holds its value (None: nobody).
    fields: Mapping[str, Owner | None]
    # Event payloads: each field's category from the event catalogue (else the policy's).
    categories: Mapping[str, str] | None = None


class FieldDecision(NamedTuple):
    """One field's decision (a named tuple: a decision makes one per field, and a frozen
    dataclass cost as much to build as the rest of the decision)."""

    field: str
    category: str | None
    release: bool
    reason: str  # precise: for the audit log and same-organisation callers
    shown: str  # what the caller sees (another organisation: no_consent or not_shared)
    rule: str
    basis: str | None = None  # consent id or legal:<ref>, for released crossings
    listed: bool = True  # False for `never` categories: not even named as withheld
    replace: str | None = None  # "routing_handle": released only as the unit's handle
    owner: str | None = None  # the organisation holding the value (orgnr), if any


@dataclass(frozen=True, slots=True)
class Decision:
    policy_version: str
    resource: str
    purpose: str
    fields: tuple[FieldDecision, ...]

    @property
    def released(self) -> tuple[str, ...]:
        return tuple(d.field for d in self.fields if d.release)


class PurposeRequired(Problem):
    status = 400
    type = "purpose-required"
    title = "A purpose is required"


class PurposeNotAllowed(Problem):
    status = 400
    type = "purpose-not-allowed"
    title = "Purpose not allowed"


def caller_roles(caller: CallerContext) -> tuple[str | None, ...]:
    """The roles whose purposes a caller may use; a system token's is the system's (None)."""
    if caller.kind == "system":
        return (None,)
    if caller.kind == "staff":
        return caller.roles
    return ()


def allowed_purposes(policy: Policy, caller: CallerContext) -> tuple[str, ...]:
    found = {p for role in caller_roles(caller) for p in policy.role_purposes.get(role, ())}
    return tuple(sorted(found))


def require_purpose(policy: Policy, caller: CallerContext, declared: str | None) -> str:
    """The purpose the caller declared in the Broen-Purpose header, if it may use it;
    otherwise a 400 problem listing the purposes it may use."""
    allowed = allowed_purposes(policy, caller)
    if not declared:
        raise PurposeRequired(
            f"Declare the purpose of the request in the {PURPOSE_HEADER} header.",
            allowed_purposes=list(allowed),
        )
    if declared not in allowed:
        raise PurposeNotAllowed(
            "You may not declare this purpose; the allowed purposes are listed.",
            allowed_purposes=list(allowed),
        )
    return declared


def age_on(birth_date: date, day: date) -> int:
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def grantors_counting(
    policy: Policy, subject: Subject, purpose: str, moment: datetime
) -> frozenset[str]:
    """Whose consent counts for this participant and purpose at `moment` (`minors`)."""
    under_16, from_16, from_18 = policy.grantors.get(purpose) or policy.grantors[None]
    if subject.birth_date is None:
        return under_16 & from_16 & from_18
    age = age_on(subject.birth_date, moment.date())
    return under_16 if age < 16 else from_16 if age < 18 else from_18


def consent_counts(
    policy: Policy, subject: Subject, purpose: str, consent: Consent, now: datetime
) -> bool:
    """Whether the consent's grantor could give it: at the participant's age when it took
    effect (so a guardian's consent given at 15 still counts at 16), and a guardian's never
    from the 18th birthday on, when parental responsibility ends."""
    if consent.grantor not in grantors_counting(policy, subject, purpose, consent.valid_from):
        return False
    return not (consent.grantor == "guardian" and is_adult(subject, now))


def is_adult(subject: Subject, now: datetime) -> bool:
    return subject.birth_date is not None and age_on(subject.birth_date, now.date()) >= 18


# An outcome before it is tied to a field: release, reason, rule, basis.
_Outcome = tuple[bool, str, str, str | None]


def decide(policy: Policy, request: DecisionRequest) -> Decision:
    context = request.context
    caller, purpose, subject = context.caller, context.purpose, context.subject
    gate = _gate(policy, context)
    protected = subject.adressebeskyttelse in policy.address_levels
    hides_units = subject.adressebeskyttelse in policy.unit_levels
    unit_fields = policy.unit_fields.get(request.resource, frozenset())
    staff_fields = policy.staff_fields.get(request.resource, frozenset())
    crossings: dict[tuple[str, str, str], _Outcome] = {}
    decided: list[FieldDecision] = []

    for field, owner in request.fields.items():
        if request.categories is not None:
            category = request.categories.get(field)
        else:
            owner_agency = owner.agency_type if owner is not None else None
            category = policy.category_of(request.resource, field, owner_agency)
        own = owner is not None and owner.orgnr == caller.orgnr
        replace = None
        if category is None:
            outcome: _Outcome = (False, UNKNOWN_FIELD, f"resources.{request.resource}", None)
        elif category not in policy.categories:
            outcome = (False, UNKNOWN_CATEGORY, "categories", None)
        elif category in policy.never:
            decided.append(
                FieldDecision(
                    field, category, False, NEVER, NEVER, f"categories.{category}", None, False
                )
            )
            continue
        elif gate is not None:
            outcome = gate
        elif own:
            outcome = (True, OWN_ORGANISATION, "own-organisation", None)
        elif protected and category in policy.address_categories:
            outcome = (False, PROTECTED, "protection.adressebeskyttelse", None)
        elif owner is None:
            outcome = (False, NO_VALUE, "no-value", None)
        elif hides_units and field in staff_fields and owner.agency_type in policy.unit_owners:
            outcome = (False, PROTECTED, "protection.unit_identity", None)
        else:
            key = (owner.orgnr, owner.agency_type, category)
            found = crossings.get(key)
            if found is None:
                found = crossings[key] = _crossing(policy, context, owner, category)
            outcome = found
            if (
                outcome[0]
                and hides_units
                and field in unit_fields
                and owner.agency_type in policy.unit_owners
            ):
                replace = ROUTING_HANDLE

        release, reason, rule, basis = outcome
        if release or own:
            shown = reason
        elif reason == NO_CONSENT or (
            reason == NO_VALUE and (caller.agency_type, category, purpose) in policy.consentable
        ):
            shown = NO_CONSENT
        else:
            shown = NOT_SHARED
        # Positional: the named tuple is built once per field of every record.
        decided.append(
            FieldDecision(
                field,
                category,
                release,
                reason,
                shown,
                rule,
                basis,
                True,
                replace,
                owner.orgnr if owner is not None else None,
            )
        )

    return Decision(policy.version, request.resource, purpose, tuple(decided))


def gate_reason(policy: Policy, context: Context) -> str | None:
    """Why this caller may see nothing of the participant (purpose, relationship,
    skjerming), or None when the fields are decided one by one."""
    gate = _gate(policy, context)
    return None if gate is None else gate[1]


def _gate(policy: Policy, context: Context) -> _Outcome | None:
    """What stops this caller seeing anything of the participant, if anything does."""
    caller, purpose = context.caller, context.purpose
    needed: set[str] = set()
    allowed = False
    for role in caller_roles(caller):
        relationships = policy.access.get((role, purpose))
        if relationships is not None:
            allowed = True
            needed |= relationships
    if not allowed:
        return (False, PURPOSE_NOT_ALLOWED, "roles", None)
    if not needed & context.relationships:
        return (False, NO_RELATIONSHIP, "roles", None)
    if context.subject.skjermet and not (caller.kind == "staff" and caller.skjermet_authorised):
        return (False, SKJERMET, "protection.skjermet", None)
    return None


def _crossing(policy: Policy, context: Context, owner: Owner, category: str) -> _Outcome:
    """A value crossing from `owner` to the caller's organisation: the flow rules decide."""
    caller, purpose, grants = context.caller, context.purpose, context.grants
    rules = [
        rule
        for rule in policy.flows.get((owner.agency_type, caller.agency_type or "", category), ())
        if purpose in rule.purposes
    ]
    if not rules:
        return (False, NO_RULE, "flows", None)
    if rules[0].kind == "never":
        return (False, NEVER, rules[0].id, None)
    if not grants.available:
        return (False, CONSENT_UNAVAILABLE, rules[0].id, None)
    for rule in rules:
        if rule.kind == "legal" and _legal_basis_in_force(grants, rule, context.now):
            return (True, LEGAL_BASIS, rule.id, f"legal:{rule.legal_ref}")
    consent_rules = [rule for rule in rules if rule.kind == "consent"]
    if not consent_rules:
        return (False, NO_LEGAL_BASIS, rules[0].id, None)
    consent = _consent(policy, context, owner, category)
    if consent is None:
        return (False, NO_CONSENT, consent_rules[0].id, None)
    return (True, CONSENT, consent_rules[0].id, consent.id)


def decide_crossing(
    policy: Policy, context: Context, owner: Owner, category: str, field: str
) -> FieldDecision:
    """Whether a value of `category` held by `owner` may cross to the caller's organisation
    for the context's purpose, by the flow rules alone: for what the caller is handed rather
    than reads (a message: `owner` is its sender, the caller its recipient)."""
    if owner.orgnr == context.caller.orgnr:
        release, reason, rule, basis = True, OWN_ORGANISATION, "own-organisation", None
    else:
        release, reason, rule, basis = _crossing(policy, context, owner, category)
    shown = reason if release else (NO_CONSENT if reason == NO_CONSENT else NOT_SHARED)
    return FieldDecision(
        field, category, release, reason, shown, rule, basis, True, None, owner.orgnr
    )


def _legal_basis_in_force(grants: Grants, rule: Rule, now: datetime) -> bool:
    return any(b.ref == rule.legal_ref and b.in_force(now) for b in grants.legal_bases)


def _consent(policy: Policy, context: Context, owner: Owner, category: str) -> Consent | None:
    """The consent that covers this crossing (the lowest id when several do: deterministic)."""
    caller, purpose, now = context.caller, context.purpose, context.now
    chosen: Consent | None = None
    for consent in context.grants.consents:
        if (
            category in consent.categories
            and purpose in consent.purposes
            and (owner.agency_type in consent.disclosers or owner.orgnr in consent.disclosers)
            and (caller.agency_type in consent.recipients or caller.orgnr in consent.recipients)
            and consent.in_force(now)
            and (chosen is None or consent.id < chosen.id)
            and consent_counts(policy, context.subject, purpose, consent, now)
        ):
            chosen = consent
    return chosen
