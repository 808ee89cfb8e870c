"""The policy as a teacher, a veileder, an OT adviser and a participant meet it."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest

from gateway.policy import (
    GivenGrants,
    Grants,
    PurposeNotAllowed,
    PurposeRequired,
    Subject,
    decide_participant,
    load_policy,
    project_events,
    project_participant,
    project_records,
    read_grants,
    require_purpose,
)
from services.participant.schemas import AssignmentRead, EventRead, EventSource

from .factories import (
    COUNTY_ORG,
    NAV_ORG,
    NOW,
    SCHOOL_ORG,
    consent,
    context,
    kontaktlaerer,
    participant,
    staff,
    system,
    veileder,
)

POLICY = load_policy()
EVERY_FIELD_AT = {f: NAV_ORG for f in ("name", "birth_date", "phone", "email", "address")}


def shown(projected: object) -> dict[str, str]:
    return {w.field: w.reason for w in projected.withheld}  # type: ignore[attr-defined]


def test_kontaktlaerer_without_consent_sees_no_nav_fields() -> None:
    person = participant({"name": SCHOOL_ORG, "phone": NAV_ORG, "email": NAV_ORG})
    decision = decide_participant(POLICY, context(kontaktlaerer(), person), person)
    projected = project_participant(person, decision)

    assert projected is not None
    assert projected.name == "Kari Nordmann" and projected.phone is None
    assert set(projected.provenance) == {"name"}
    assert shown(projected)["phone"] == "no_consent"
    assert shown(projected)["email"] == "no_consent"
    by_field = {d.field: d for d in decision.fields}
    assert (
        by_field["phone"].rule == "flow.consent" and by_field["name"].reason == "own_organisation"
    )
    assert decision.policy_version == "2025.1"


def test_veileder_with_the_participants_consent_sees_the_schools_contact_fields() -> None:
    person = participant({"phone": SCHOOL_ORG, "email": SCHOOL_ORG, "address": SCHOOL_ORG})
    grants = Grants((consent(id="c-42", categories=("contact",)),))
    decision = decide_participant(POLICY, context(veileder(), person, grants=grants), person)
    projected = project_participant(person, decision)

    assert projected is not None
    assert projected.phone == "+47 99999999" and projected.email == "kari@example.test"
    assert projected.address is None and shown(projected)["address"] == "no_consent"
    phone = next(d for d in decision.fields if d.field == "phone")
    assert (phone.release, phone.basis, phone.rule) == (True, "c-42", "flow.consent")


def test_the_same_consent_does_not_cover_another_purpose() -> None:
    person = participant({"phone": SCHOOL_ORG})
    grants = Grants((consent(categories=("contact",)),))
    decision = decide_participant(
        POLICY, context(veileder(), person, purpose="kontakt", grants=grants), person
    )
    assert project_participant(person, decision) is None


def test_a_school_never_sees_nav_benefits_even_with_consent() -> None:
    benefit = EventRead(
        id=uuid.uuid4(),
        participant_id=uuid.uuid4(),
        type="ytelse.endret",
        occurred_at=NOW,
        recorded_at=NOW,
        source=EventSource(
            orgnr=NAV_ORG, agency_type="nav", system="arena", verification="verified"
        ),
        payload={"benefit": "tiltakspenger", "amount": 1200, "unit_id": None},
    )
    categories = {"ytelse.endret": {"benefit": "nav.benefits", "amount": "nav.benefits"}}
    everything = consent(
        categories=("nav.benefits",), disclosers=("nav",), recipients=("skole", "kommune")
    )
    ctx = context(kontaktlaerer(), subject=Subject(birth_date=date(2000, 1, 1)))
    ctx = context(kontaktlaerer(), subject=ctx.subject, grants=Grants((everything,)))
    assert project_events(POLICY, ctx, [benefit], payload_categories=categories) == []

    kommune = context(
        system("910000004"),
        subject=ctx.subject,
        grants=Grants((everything,)),
        relationships=("programme",),
    )
    [seen] = project_events(POLICY, kommune, [benefit], payload_categories=categories)
    assert seen.values["payload"] == {"benefit": "tiltakspenger", "amount": 1200}
    assert {d.basis for d in seen.decision.fields} == {everything.id}


def test_a_skjermet_participant_is_invisible_to_unauthorised_staff() -> None:
    person = participant({**EVERY_FIELD_AT, "skjermet": NAV_ORG}, skjermet=True)
    colleague = staff(NAV_ORG, "veileder")
    decision = decide_participant(POLICY, context(colleague, person), person)
    assert project_participant(person, decision) is None
    assert {d.reason for d in decision.fields if d.listed} == {"skjermet"}

    authorised = staff(NAV_ORG, "veileder", skjermet_authorised=True)
    decision = decide_participant(POLICY, context(authorised, person), person)
    assert project_participant(person, decision) is not None

    integration = system(NAV_ORG)
    decision = decide_participant(POLICY, context(integration, person), person)
    assert project_participant(person, decision) is None


def test_a_protected_address_never_leaves_its_owner_even_with_consent() -> None:
    person = participant(
        {"address": NAV_ORG, "phone": NAV_ORG, "name": NAV_ORG, "adressebeskyttelse": NAV_ORG},
        adressebeskyttelse="fortrolig",
    )
    grants = Grants((consent(categories=("address", "contact", "identity.basic")),))
    decision = decide_participant(POLICY, context(kontaktlaerer(), person, grants=grants), person)
    projected = project_participant(person, decision)
    assert projected is not None and projected.name == "Kari Nordmann"
    assert projected.address is None and projected.phone is None
    # Another organisation is not told why: protection looks like anything else.
    assert shown(projected)["address"] == "not_shared"
    assert shown(projected)["adressebeskyttelse"] == "not_shared"
    address = next(d for d in decision.fields if d.field == "address")
    assert (address.reason, address.rule) == ("protected", "protection.adressebeskyttelse")

    own = decide_participant(POLICY, context(veileder(), person), person)
    assert project_participant(person, own).address is not None  # type: ignore[union-attr]


def test_without_a_relationship_a_participant_is_like_one_that_does_not_exist() -> None:
    person = participant({"name": SCHOOL_ORG})
    decision = decide_participant(
        POLICY, context(kontaktlaerer(), person, relationships=()), person
    )
    assert project_participant(person, decision) is None
    assert {d.reason for d in decision.fields if d.listed} == {"no_relationship"}


def test_the_withheld_list_does_not_depend_on_which_values_exist() -> None:
    held = participant({"phone": NAV_ORG, "email": NAV_ORG, "name": SCHOOL_ORG})
    bare = participant({"name": SCHOOL_ORG})
    lists = [
        shown(project_participant(p, decide_participant(POLICY, context(kontaktlaerer(), p), p)))
        for p in (held, bare)
    ]
    assert lists[0] == lists[1]
    assert set(lists[0]) == {
        "birth_date",
        "phone",
        "email",
        "address",
        "adressebeskyttelse",
        "skjermet",
    }


@pytest.mark.anyio
async def test_consent_service_unreachable_withholds_crossings_and_keeps_own_values() -> None:
    person = participant({"name": SCHOOL_ORG, "phone": NAV_ORG})
    source = GivenGrants()
    source.give(person.id, consent(categories=("contact",)))
    source.available = False
    grants = (await read_grants(source, [person.id]))[person.id]
    decision = decide_participant(POLICY, context(kontaktlaerer(), person, grants=grants), person)
    by_field = {d.field: d for d in decision.fields}
    assert by_field["phone"].reason == "consent_unavailable" and not by_field["phone"].release
    assert by_field["name"].release

    source.available = True
    grants = (await read_grants(source, [person.id]))[person.id]
    decision = decide_participant(POLICY, context(kontaktlaerer(), person, grants=grants), person)
    assert "phone" in decision.released


def test_a_withdrawn_or_expired_consent_releases_nothing() -> None:
    person = participant({"phone": NAV_ORG})
    expired = consent(days=-1, categories=("contact",))
    decision = decide_participant(
        POLICY, context(kontaktlaerer(), person, grants=Grants((expired,))), person
    )
    assert decision.released == ()


@pytest.mark.parametrize(
    ("birth_date", "grantor", "counts"),
    [
        (NOW.date() - timedelta(days=365 * 15), "guardian", True),
        (NOW.date() - timedelta(days=365 * 15), "participant", False),
        (NOW.date() - timedelta(days=365 * 17), "participant", True),
        (NOW.date() - timedelta(days=365 * 17), "guardian", False),
        (NOW.date() - timedelta(days=365 * 19), "guardian", False),
        (NOW.date() - timedelta(days=365 * 19), "representative", True),
    ],
)
def test_whose_consent_counts_depends_on_the_participants_age(
    birth_date: date, grantor: str, counts: bool
) -> None:
    person = participant({"phone": NAV_ORG}, birth_date=birth_date)
    grants = Grants((consent(grantor=grantor, categories=("contact",)),))
    decision = decide_participant(POLICY, context(kontaktlaerer(), person, grants=grants), person)
    assert ("phone" in decision.released) is counts


def test_a_guardians_consent_given_before_16_counts_until_the_18th_birthday() -> None:
    given = NOW - timedelta(days=800)  # about two years and two months ago
    grants = Grants((consent(grantor="guardian", categories=("contact",), valid_from=given),))
    eighteenth = NOW.date().replace(year=NOW.year - 18)
    cases = (
        (given.date().replace(year=given.year - 15), True),  # 15 when given, 16 now
        (eighteenth + timedelta(days=1), True),  # turns 18 tomorrow
        (eighteenth, False),  # 18 today: parental responsibility has ended
    )
    for born, counts in cases:
        person = participant({"phone": NAV_ORG}, birth_date=born)
        decision = decide_participant(
            POLICY, context(kontaktlaerer(), person, grants=grants), person
        )
        assert ("phone" in decision.released) is counts, born


def test_a_guardians_consent_given_from_16_never_counted() -> None:
    given = NOW - timedelta(days=10)
    person = participant({"phone": NAV_ORG}, birth_date=given.date().replace(year=given.year - 16))
    grants = Grants((consent(grantor="guardian", categories=("contact",), valid_from=given),))
    decision = decide_participant(POLICY, context(kontaktlaerer(), person, grants=grants), person)
    assert "phone" not in decision.released


def test_a_teacher_must_declare_a_purpose_the_role_allows() -> None:
    teacher = kontaktlaerer()
    assert require_purpose(POLICY, teacher, "oppfolging") == "oppfolging"
    with pytest.raises(PurposeRequired) as missing:
        require_purpose(POLICY, teacher, None)
    assert missing.value.status == 400
    assert missing.value.body()["allowed_purposes"] == ["kontakt", "oppfolging", "tilrettelegging"]
    for declared in ("inntak", "spionasje"):
        with pytest.raises(PurposeNotAllowed) as refused:
            require_purpose(POLICY, teacher, declared)
        assert refused.value.body()["type"].endswith("/purpose-not-allowed")
        assert declared not in refused.value.detail
    with pytest.raises(PurposeNotAllowed) as auditor:
        require_purpose(POLICY, staff(NAV_ORG, "auditor"), "oppfolging")
    assert auditor.value.body()["allowed_purposes"] == []


def test_a_purpose_the_role_may_not_use_withholds_everything() -> None:
    person = participant({"name": SCHOOL_ORG})
    decision = decide_participant(
        POLICY, context(kontaktlaerer(), person, purpose="rapportering"), person
    )
    assert decision.released == ()
    assert {d.reason for d in decision.fields if d.listed} == {"purpose_not_allowed"}


def assignment(orgnr: str, unit_id: uuid.UUID, staff_id: uuid.UUID | None) -> AssignmentRead:
    return AssignmentRead(
        id=uuid.uuid4(),
        participant_id=uuid.uuid4(),
        orgnr=orgnr,
        role="veileder",
        staff_id=staff_id,
        unit_id=unit_id,
        valid_from=NOW,
        valid_to=None,
        recorded_at=NOW,
    )


def test_an_ot_adviser_sees_the_veileder_assignment_only_with_consent() -> None:
    unit, person_id = uuid.uuid4(), uuid.uuid4()
    records = [assignment(NAV_ORG, unit, uuid.uuid4()), assignment(COUNTY_ORG, unit, None)]
    adviser = staff(COUNTY_ORG, "ot_radgiver")
    agencies = {NAV_ORG: "nav", COUNTY_ORG: "fylkeskommune"}
    ctx = context(adviser, subject=Subject(birth_date=date(2001, 1, 1)))
    own_only = project_records(POLICY, ctx, records, agency_types=agencies)
    assert [r.values["orgnr"] for r in own_only] == [COUNTY_ORG]
    assert own_only[0].withheld == ()

    followup = consent(categories=("nav.followup",), recipients=("fylkeskommune",))
    ctx = context(adviser, subject=ctx.subject, grants=Grants((followup,)))
    both = project_records(POLICY, ctx, records, agency_types=agencies)
    assert [r.values["orgnr"] for r in both] == [NAV_ORG, COUNTY_ORG]
    assert both[0].values["unit_id"] == str(unit) and person_id not in both[0].values


def test_strengt_fortrolig_names_the_nav_unit_only_by_its_routing_handle() -> None:
    unit, veileder_id = uuid.uuid4(), uuid.uuid4()
    records = [assignment(NAV_ORG, unit, veileder_id)]
    followup = consent(categories=("nav.followup",))
    subject = Subject(adressebeskyttelse="strengt_fortrolig", birth_date=date(2001, 1, 1))
    ctx = context(kontaktlaerer(), subject=subject, grants=Grants((followup,)))
    handles = {unit: "nav-rute-7f3a"}

    [seen] = project_records(
        POLICY, ctx, records, agency_types={NAV_ORG: "nav"}, routing_handles=handles
    )
    assert seen.values["unit_id"] == "nav-rute-7f3a"
    assert "staff_id" not in seen.values
    assert {w.field: w.reason for w in seen.withheld} == {"staff_id": "not_shared"}

    [unhandled] = project_records(POLICY, ctx, records, agency_types={NAV_ORG: "nav"})
    assert "unit_id" not in unhandled.values and str(unit) not in str(unhandled.values)

    nav_itself = context(veileder(), subject=subject)
    [own] = project_records(POLICY, nav_itself, records, agency_types={})
    assert own.values["unit_id"] == str(unit) and own.values["staff_id"] == str(veileder_id)


def test_an_event_of_an_unknown_type_is_left_out_even_for_its_owner() -> None:
    event = EventRead(
        id=uuid.uuid4(),
        participant_id=uuid.uuid4(),
        type="ukjent",
        occurred_at=NOW,
        recorded_at=NOW,
        source=EventSource(
            orgnr=SCHOOL_ORG, agency_type="skole", system="sis", verification="verified"
        ),
        payload={"x": 1},
    )
    ctx = context(kontaktlaerer(), subject=Subject(birth_date=date(2001, 1, 1)))
    assert project_events(POLICY, ctx, [event], payload_categories={}) == []


def test_a_veileder_tildelt_event_names_the_nav_unit_of_a_kode_6_person_only_by_its_handle() -> (
    None
):
    unit, veileder_id = uuid.uuid4(), uuid.uuid4()
    event = EventRead(
        id=uuid.uuid4(),
        participant_id=uuid.uuid4(),
        type="veileder.tildelt",
        occurred_at=NOW,
        recorded_at=NOW,
        source=EventSource(
            orgnr=NAV_ORG, agency_type="nav", system="arena", verification="verified"
        ),
        payload={"staff_id": str(veileder_id), "unit_id": str(unit)},
    )
    categories = {
        "veileder.tildelt": {
            "staff_id": "nav.followup",
            "unit_id": "nav.followup",
            "valid_from": "nav.followup",
        }
    }
    subject = Subject(adressebeskyttelse="strengt_fortrolig", birth_date=date(2001, 1, 1))
    ctx = context(
        kontaktlaerer(), subject=subject, grants=Grants((consent(categories=("nav.followup",)),))
    )

    [seen] = project_events(
        POLICY, ctx, [event], payload_categories=categories, routing_handles={unit: "nav-rute-1"}
    )

    assert seen.values["payload"] == {"unit_id": "nav-rute-1"}
    assert str(veileder_id) not in str(seen.values) and str(unit) not in str(seen.values)
    assert {w.field: w.reason for w in seen.withheld}["payload.staff_id"] == "not_shared"
