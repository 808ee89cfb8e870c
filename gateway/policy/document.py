"""The personvern policy as a document: its pydantic model, its loading, and the indexes
built from it once so that a decision is a few dictionary lookups.

The document is data (DOMAIN.md: the legal basis between NAV and education is still being
decided, and counties differ): `default.toml` ships with the gateway and
`BROEN_GATEWAY_POLICY_PATH` points a deployment at its own. A document that does not
validate stops the start with a ConfigurationError naming the file, the place and the
problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from services.participant.schemas import AssignmentRead, ParticipantRead, ProgrammeRead
from shared.documents import invalid, read_toml
from shared.vocabulary import AGENCY_TYPES, CATEGORIES, AgencyType, Category, Role

SHIPPED_POLICY = Path(__file__).with_name("default.toml")

Relationship = Literal["registered", "assigned", "same_unit", "programme"]
Grantor = Literal["participant", "guardian", "representative"]
ResourceName = Literal["participant", "assignment", "programme", "event"]
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,79}$")]
Basis = Annotated[
    str, StringConstraints(pattern=r"^(consent|never|legal:[a-z0-9][a-z0-9._-]{0,79})$")
]
ANY = "*"

# The schema each resource's fields must come from (events: the catalogue's payloads).
RESOURCE_MODELS: dict[str, type[BaseModel]] = {
    "participant": ParticipantRead,
    "assignment": AssignmentRead,
    "programme": ProgrammeRead,
}
# Fields of ParticipantRead that are the projection's own, not values.
PROJECTION_FIELDS = frozenset({"provenance", "withheld"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategorySpec(_Strict):
    description: str = Field(min_length=1)
    never: bool = Field(False, description="Never released by Broen, to anyone; never listed.")


class ResourceSpec(_Strict):
    structural: tuple[Name, ...] = Field(
        (), description="Ids, owner and times: shown only with a record of which a field is."
    )
    fields: dict[Name, Category] = Field(default_factory=dict)
    by_owner: dict[AgencyType, dict[Name, Category]] = Field(
        default_factory=dict, description="Categories that differ by the owner's agency type."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ResourceSpec:
        both = set(self.structural) & set(self.fields)
        if both:
            raise ValueError(f"{sorted(both)} are both structural and categorised")
        for agency, fields in self.by_owner.items():
            extra = set(fields) - set(self.fields)
            if extra:
                raise ValueError(f"by_owner.{agency} names fields not in `fields`: {sorted(extra)}")
        return self


class AccessSpec(_Strict):
    purposes: tuple[Name, ...] = Field(description="The purposes it may declare.")
    relationships: tuple[Relationship, ...] = Field(
        description="Any one of these to the participant is enough."
    )

    @model_validator(mode="after")
    def _needs_a_relationship(self) -> AccessSpec:
        if self.purposes and not self.relationships:
            raise ValueError("a role that may declare purposes needs at least one relationship")
        return self


AgencyOrAny = AgencyType | Literal["*"]
CategoryOrAny = Category | Literal["*"]


class FlowRule(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: RuleId
    description: str = Field(min_length=1)
    from_: tuple[AgencyOrAny, ...] = Field(alias="from", min_length=1)
    to: tuple[AgencyOrAny, ...] = Field(min_length=1)
    categories: tuple[CategoryOrAny, ...] = Field(min_length=1)
    purposes: tuple[Name, ...] | None = Field(None, description="Omitted: every purpose.")
    basis: Basis
    enabled: bool = True


class AdressebeskyttelseRule(_Strict):
    description: str = Field(min_length=1)
    levels: tuple[Literal["fortrolig", "strengt_fortrolig", "strengt_fortrolig_utland"], ...]
    categories: tuple[Category, ...] = Field(description="Never leave the owner organisation.")


class UnitIdentityRule(_Strict):
    description: str = Field(min_length=1)
    levels: tuple[Literal["fortrolig", "strengt_fortrolig", "strengt_fortrolig_utland"], ...]
    owners: tuple[AgencyType, ...] = Field(description="Whose units are hidden (NAV's).")
    unit_fields: dict[ResourceName, tuple[Name, ...]] = Field(
        description="Replaced by the unit's routing handle for other organisations."
    )
    staff_fields: dict[ResourceName, tuple[Name, ...]] = Field(
        description="Withheld from other organisations: a staff member names the unit."
    )


class SkjermetRule(_Strict):
    description: str = Field(min_length=1)


class Protection(_Strict):
    adressebeskyttelse: AdressebeskyttelseRule
    unit_identity: UnitIdentityRule
    skjermet: SkjermetRule


class AgeBands(_Strict):
    under_16: tuple[Grantor, ...]
    from_16: tuple[Grantor, ...]
    from_18: tuple[Grantor, ...]


class Minors(_Strict):
    description: str = Field(min_length=1)
    grantors: AgeBands = Field(
        description="Who may grant, by age when the consent takes effect (a guardian until 18)."
    )
    by_purpose: dict[Name, AgeBands] = Field(default_factory=dict)


class PolicyDocument(_Strict):
    version: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")]
    description: str = Field(min_length=1)
    purposes: dict[Name, str] = Field(min_length=1, description="Purpose and what it means.")
    categories: dict[Category, CategorySpec] = Field(min_length=1)
    resources: dict[ResourceName, ResourceSpec]
    roles: dict[Role, AccessSpec]
    system: AccessSpec = Field(description="A system token (acting as its organisation).")
    flows: tuple[FlowRule, ...] = Field(min_length=1)
    protection: Protection
    minors: Minors

    @model_validator(mode="after")
    def _references_resolve(self) -> PolicyDocument:
        purposes: set[str] = set(self.purposes)
        categories: set[str] = set(self.categories)

        def known_purposes(where: str, named: tuple[str, ...] | None) -> None:
            unknown = sorted(set(named or ()) - purposes)
            if unknown:
                raise ValueError(f"{where} names purposes not declared in `purposes`: {unknown}")

        for role, access in self.roles.items():
            known_purposes(f"roles.{role}", access.purposes)
        known_purposes("system", self.system.purposes)
        known_purposes("minors.by_purpose", tuple(self.minors.by_purpose))

        for name, resource in self.resources.items():
            model = RESOURCE_MODELS.get(name)
            named = {**resource.fields, **{f: "" for f in resource.structural}}
            if model is not None:
                absent = sorted(set(named) - set(model.model_fields))
                if absent:
                    raise ValueError(
                        f"resources.{name} names fields {model.__name__} lacks: {absent}"
                    )
            used = set(resource.fields.values()) | {
                c for fields in resource.by_owner.values() for c in fields.values()
            }
            undeclared = sorted(used - categories)
            if undeclared:
                raise ValueError(
                    f"resources.{name} uses categories not declared in `categories`: {undeclared}"
                )

        seen: set[str] = set()
        never = {str(c) for c, spec in self.categories.items() if spec.never}
        for rule in self.flows:
            if rule.id in seen:
                raise ValueError(f"flow rule id '{rule.id}' is used twice")
            seen.add(rule.id)
            known_purposes(f"flow '{rule.id}'", rule.purposes)
            named_categories = {str(c) for c in rule.categories} - {ANY}
            unnamed = sorted(named_categories - categories)
            if unnamed:
                raise ValueError(f"flow '{rule.id}' names undeclared categories: {unnamed}")
            if rule.basis != "never" and named_categories & never:
                raise ValueError(
                    f"flow '{rule.id}' lets a `never` category cross: "
                    f"{sorted(named_categories & never)}"
                )
        return self


# --- the compiled policy ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One flow rule as the decision uses it."""

    id: str
    purposes: frozenset[str]
    kind: Literal["never", "legal", "consent"]
    legal_ref: str | None


_PRECEDENCE = {"never": 0, "legal": 1, "consent": 2}


class Policy:
    """A validated policy document with the indexes a decision needs, built once."""

    def __init__(self, document: PolicyDocument, source: str = "(in memory)") -> None:
        self.document = document
        self.source = source
        self.version = document.version
        self.purposes = frozenset(document.purposes)
        self.categories = frozenset(document.categories)
        self.never = frozenset(c for c, s in document.categories.items() if s.never)
        # (resource, owner agency type or None) -> {field: category}; structural fields apart
        self.fields: dict[tuple[str, str | None], dict[str, str]] = {}
        self.structural: dict[str, tuple[str, ...]] = {}
        for name, resource in document.resources.items():
            self.structural[name] = resource.structural
            base: dict[str, str] = dict(resource.fields)
            self.fields[(name, None)] = base
            by_owner: dict[str, dict[str, str]] = dict(resource.by_owner)  # type: ignore[arg-type]
            for agency in AGENCY_TYPES:
                self.fields[(name, agency)] = {**base, **by_owner.get(agency, {})}

        # (role or None for a system, purpose) -> relationships, any of which suffices
        self.access: dict[tuple[str | None, str], frozenset[str]] = {}
        for role, spec in document.roles.items():
            for purpose in spec.purposes:
                self.access[(role, purpose)] = frozenset(spec.relationships)
        for purpose in document.system.purposes:
            self.access[(None, purpose)] = frozenset(document.system.relationships)
        self.role_purposes: dict[str | None, tuple[str, ...]] = {
            role: tuple(sorted(spec.purposes)) for role, spec in document.roles.items()
        }
        self.role_purposes[None] = tuple(sorted(document.system.purposes))

        # (from agency, to agency, category) -> rules, never first, then legal, then consent
        rules: dict[tuple[str, str, str], list[Rule]] = {}
        for flow in document.flows:
            if not flow.enabled:
                continue
            kind, _, ref = flow.basis.partition(":")
            rule = Rule(
                id=f"flow.{flow.id}",
                purposes=frozenset(flow.purposes) if flow.purposes is not None else self.purposes,
                kind=kind,  # type: ignore[arg-type]
                legal_ref=ref or None,
            )
            for source_agency in _expand(flow.from_, AGENCY_TYPES):
                for target in _expand(flow.to, AGENCY_TYPES):
                    for category in _expand(flow.categories, CATEGORIES):
                        if category in self.never or category not in self.categories:
                            continue
                        rules.setdefault((source_agency, target, category), []).append(rule)
        self.flows: dict[tuple[str, str, str], tuple[Rule, ...]] = {
            key: tuple(sorted(found, key=lambda r: (_PRECEDENCE[r.kind], r.id)))
            for key, found in rules.items()
        }
        # (to agency, category, purpose) where some agency's values may cross with consent:
        # what a field without a value shows, so that a missing value looks like a held one.
        self.consentable = frozenset(
            (target, category, purpose)
            for (_, target, category), found in self.flows.items()
            for rule in found
            if rule.kind == "consent"
            for purpose in rule.purposes
            if not _barred(found, purpose)
        )

        protection = document.protection
        self.address_levels = frozenset(protection.adressebeskyttelse.levels)
        self.address_categories = frozenset(protection.adressebeskyttelse.categories)
        unit = protection.unit_identity
        self.unit_levels = frozenset(unit.levels)
        self.unit_owners = frozenset(unit.owners)
        # An event's fields are its payload's, named `payload.<name>` in its decisions.
        self.unit_fields: dict[str, frozenset[str]] = {
            r: frozenset(_decided_name(r, name) for name in f) for r, f in unit.unit_fields.items()
        }
        self.staff_fields: dict[str, frozenset[str]] = {
            r: frozenset(_decided_name(r, name) for name in f) for r, f in unit.staff_fields.items()
        }

        minors = document.minors
        self.grantors: dict[str | None, tuple[frozenset[str], frozenset[str], frozenset[str]]] = {
            purpose: _bands(bands) for purpose, bands in minors.by_purpose.items()
        }
        self.grantors[None] = _bands(minors.grantors)

    def category_of(self, resource: str, field: str, owner_agency: str | None) -> str | None:
        table = self.fields.get((resource, owner_agency)) or self.fields.get((resource, None))
        return None if table is None else table.get(field)


def _decided_name(resource: str, field: str) -> str:
    return f"payload.{field}" if resource == "event" else field


def _expand(named: tuple[str, ...], everything: tuple[str, ...]) -> tuple[str, ...]:
    return everything if ANY in named else named


def _barred(rules: tuple[Rule, ...], purpose: str) -> bool:
    return any(r.kind == "never" and purpose in r.purposes for r in rules)


def _bands(bands: AgeBands) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    return frozenset(bands.under_16), frozenset(bands.from_16), frozenset(bands.from_18)


def parse_policy(raw: Mapping[str, Any], source: str = "(in memory)") -> Policy:
    """A policy from an already parsed document, or a ConfigurationError saying what is wrong."""
    try:
        return Policy(PolicyDocument.model_validate(raw), source)
    except ValidationError as error:
        raise invalid("the personvern policy", source, error) from None


def load_policy(path: Path = SHIPPED_POLICY) -> Policy:
    """The policy at `path`, or a ConfigurationError naming the file, the place and the problem."""
    raw = read_toml(path, "the personvern policy")
    return parse_policy(raw, str(path))
