"""Properties of the decision over random callers, relationships, purposes, flags,
consents and legal bases."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy import (
    Consent,
    Context,
    Grants,
    LegalBasis,
    Subject,
    decide_participant,
    load_policy,
    project_participant,
)
from gateway.policy.decide import caller_roles
from gateway.policy.document import parse_policy
from shared.internal_auth import CallerContext
from shared.vocabulary import CATEGORIES, ROLES

from .factories import AGENCY_OF, NOW, participant
from .test_document import shipped

POLICY = load_policy()
# The same policy with every legal basis enabled, so the legal path is exercised too.
_document = shipped()
for _flow in _document["flows"]:
    _flow["enabled"] = True
LEGAL_POLICY = parse_policy(_document)
POLICIES = st.sampled_from([POLICY, LEGAL_POLICY])

ORGS = sorted(AGENCY_OF)
PURPOSES = ["oppfolging", "inntak", "kontakt", "rapportering", "tilrettelegging", "ukjent"]
FIELDS = ["name", "phone", "email", "address", "adressebeskyttelse", "skjermet"]
PROPERTIES = settings(max_examples=150, deadline=None)

callers = st.builds(
    lambda kind, orgnr, roles, authorised: CallerContext(
        kind=kind,
        orgnr=orgnr,
        agency_type=AGENCY_OF[orgnr],
        roles=tuple(roles) if kind == "staff" else (),
        skjermet_authorised=authorised and kind == "staff",
    ),
    st.sampled_from(["staff", "system"]),
    st.sampled_from(ORGS),
    st.lists(st.sampled_from(ROLES), max_size=2, unique=True),
    st.booleans(),
)
parties = st.frozensets(st.sampled_from(sorted(set(AGENCY_OF.values())) + ORGS), max_size=4)
consents = st.builds(
    lambda i, grantor, disclosers, recipients, categories, purposes, start, length: Consent(
        id=f"c-{i}",
        grantor=grantor,
        disclosers=disclosers,
        recipients=recipients,
        categories=categories,
        purposes=purposes,
        valid_from=NOW + timedelta(days=start),
        valid_to=None if length is None else NOW + timedelta(days=start + length),
    ),
    st.integers(0, 9),
    st.sampled_from(["participant", "guardian", "representative"]),
    parties,
    parties,
    st.frozensets(st.sampled_from(CATEGORIES), max_size=4),
    st.frozensets(st.sampled_from(PURPOSES), max_size=3),
    st.integers(-30, 5),
    st.none() | st.integers(1, 60),
)
legal_bases = st.builds(
    lambda ref, start: LegalBasis(ref, NOW + timedelta(days=start)),
    st.sampled_from(["opplaeringslova-ot", "example-nav-utdanning", "other"]),
    st.integers(-5, 5),
)
grants = st.builds(
    Grants,
    st.lists(consents, max_size=4).map(tuple),
    st.lists(legal_bases, max_size=2).map(tuple),
    st.booleans().map(lambda down: not down) | st.just(True),
)
owners = st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(ORGS))
subjects = st.builds(
    Subject,
    st.none() | st.sampled_from(["fortrolig", "strengt_fortrolig", "strengt_fortrolig_utland"]),
    st.booleans(),
    st.none() | st.dates(date(2005, 1, 1), date(2015, 12, 31)),
)
relationships = st.frozensets(st.sampled_from(["registered", "assigned", "same_unit", "programme"]))


@st.composite
def cases(draw: st.DrawFn) -> tuple[object, Context, object]:
    policy = draw(POLICIES)
    subject = draw(subjects)
    person = participant(draw(owners), birth_date=subject.birth_date or date(1990, 1, 1))
    ctx = Context(
        draw(callers),
        draw(st.sampled_from(PURPOSES)),
        draw(relationships),
        subject,
        draw(grants),
        NOW,
    )
    return policy, ctx, person


@PROPERTIES
@given(cases())
def test_no_field_is_released_without_a_relationship_and_a_basis(case: tuple) -> None:
    policy, ctx, person = case
    decision = decide_participant(policy, ctx, person)
    for field in decision.fields:
        if not field.release:
            continue
        owner = person.provenance[field.field]
        needed = set().union(
            *(policy.access.get((role, ctx.purpose), ()) for role in caller_roles(ctx.caller))
        )
        assert needed & ctx.relationships
        if owner.owner_orgnr == ctx.caller.orgnr:
            assert field.reason == "own_organisation"
            continue
        assert ctx.grants.available
        if field.basis.startswith("legal:"):
            ref = field.basis.removeprefix("legal:")
            assert any(b.ref == ref and b.in_force(NOW) for b in ctx.grants.legal_bases)
        else:
            [consent] = [c for c in ctx.grants.consents if c.id == field.basis][:1]
            assert field.category in consent.categories and ctx.purpose in consent.purposes
            assert consent.in_force(NOW)
            assert {owner.owner_agency_type, owner.owner_orgnr} & consent.disclosers
            assert {ctx.caller.agency_type, ctx.caller.orgnr} & consent.recipients


@PROPERTIES
@given(cases())
def test_never_categories_are_never_released_nor_listed_and_protected_addresses_stay(
    case: tuple,
) -> None:
    policy, ctx, person = case
    decision = decide_participant(policy, ctx, person)
    projected = project_participant(person, decision)
    never = [d for d in decision.fields if d.category in policy.never]
    assert all(not d.release and not d.listed for d in never)
    if projected is None:
        return
    listed = {w.field for w in projected.withheld}
    assert not listed & {d.field for d in never}
    assert listed | set(decision.released) == {d.field for d in decision.fields if d.listed}
    foreign = {f for f, p in person.provenance.items() if p.owner_orgnr != ctx.caller.orgnr}
    if ctx.subject.adressebeskyttelse:
        assert projected.address is None or "address" not in foreign
        assert projected.phone is None or "phone" not in foreign
    # Another organisation is told two reasons only.
    for w in projected.withheld:
        if w.field in foreign or w.field not in person.provenance:
            assert w.reason in {"no_consent", "not_shared"}


@PROPERTIES
@given(cases())
def test_the_same_inputs_give_the_same_decision(case: tuple) -> None:
    policy, ctx, person = case
    reordered = Context(
        ctx.caller,
        ctx.purpose,
        ctx.relationships,
        ctx.subject,
        Grants(ctx.grants.consents[::-1], ctx.grants.legal_bases[::-1], ctx.grants.available),
        ctx.now,
    )
    assert decide_participant(policy, ctx, person) == decide_participant(policy, reordered, person)


@PROPERTIES
@given(
    st.sampled_from(ORGS),
    st.sampled_from(ORGS),
    st.sampled_from(["name", "phone", "email"]),
    st.sampled_from(["oppfolging", "kontakt"]),
)
def test_with_a_relationship_and_a_consent_the_field_is_released(
    holder: str, reader: str, field: str, purpose: str
) -> None:
    person = participant({field: holder})
    category = "identity.basic" if field == "name" else "contact"
    consent = Consent(
        id="c-1",
        grantor="participant",
        disclosers=frozenset({AGENCY_OF[holder]}),
        recipients=frozenset({reader}),
        categories=frozenset({category}),
        purposes=frozenset({purpose}),
        valid_from=NOW - timedelta(days=1),
    )
    caller = CallerContext(kind="system", orgnr=reader, agency_type=AGENCY_OF[reader])
    subject = Subject(birth_date=date(1990, 1, 1))
    ctx = Context(caller, purpose, frozenset({"assigned"}), subject, Grants((consent,)), NOW)
    decision = decide_participant(POLICY, ctx, person)
    assert decision.released == (field,)
