"""The batch path decides exactly as one by one, and decides equal inputs only once."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy import (
    Context,
    Decision,
    DecisionRequest,
    Grants,
    LegalBasis,
    Policy,
    Subject,
    decide_participant,
    project_participant,
    subject_of,
)
from gateway.policy import project as project_module
from gateway.policy.batch import decide_participants
from services.participant.schemas import ParticipantRead

from .factories import (
    NAV_ORG,
    NOW,
    SCHOOL_ORG,
    consent,
    kontaktlaerer,
    participant,
    system,
    veileder,
)
from .test_properties import (
    FIELDS,
    ORGS,
    POLICIES,
    POLICY,
    PURPOSES,
    callers,
    grants,
    relationships,
)

# Birthdays on either side of the 16 and 18 thresholds, for either moment below.
BIRTH_DATES = [
    date(1990, 6, 1),
    date(2009, 3, 1),
    date(2009, 3, 2),
    date(2009, 3, 3),
    date(2007, 3, 1),
    date(2007, 3, 2),
    date(2007, 3, 3),
    date(2008, 2, 29),
    None,
]
TOMORROW = NOW + timedelta(days=1)
MOMENTS = [NOW, TOMORROW]
LEVELS = [None, None, "fortrolig", "strengt_fortrolig", "strengt_fortrolig_utland"]

Item = tuple[Context, ParticipantRead]


def mostly(
    likely: st.SearchStrategy[Any], anything: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Three times in four a value under which fields may cross, else a random one."""
    return st.integers(0, 3).flatmap(lambda i: anything if i == 0 else likely)


likely_callers = st.sampled_from([kontaktlaerer(), veileder(), system(NAV_ORG), system(SCHOOL_ORG)])
# A staff member needs an assignment; a system token may have registered the participant.
likely_relationships = st.sampled_from(
    [frozenset({"assigned"}), frozenset({"registered"}), frozenset({"registered", "assigned"})]
)
# Consents that may cover NAV's and the school's fields (one expiring between the two
# moments), and the NAV-school legal basis in force at both moments or only from the second.
likely_consents = st.builds(
    consent,
    id=st.sampled_from(["c-1", "c-2", "c-3"]),
    grantor=st.sampled_from(["participant", "guardian", "representative"]),
    categories=st.sampled_from(
        [("identity.basic", "contact", "address"), ("identity.basic",), ("contact", "address")]
    ),
    purposes=st.sampled_from([("oppfolging",), ("oppfolging", "kontakt")]),
    days=st.sampled_from([1, 365]),
)
likely_bases = st.lists(
    st.builds(LegalBasis, st.just("example-nav-utdanning"), st.sampled_from(MOMENTS)), max_size=1
).map(tuple)
likely_grants = st.builds(
    Grants, st.lists(likely_consents, min_size=1, max_size=3).map(tuple), likely_bases
)

# Every decision input, each with its strategy.
INPUTS: dict[str, st.SearchStrategy[Any]] = {
    "owners": st.dictionaries(
        st.sampled_from(FIELDS),
        mostly(st.sampled_from([NAV_ORG, SCHOOL_ORG]), st.sampled_from(ORGS)),
    ),
    "caller": mostly(likely_callers, callers),
    "purpose": mostly(st.sampled_from(["oppfolging", "kontakt"]), st.sampled_from(PURPOSES)),
    "relationships": mostly(likely_relationships, relationships),
    "grants": mostly(likely_grants, grants),
    "adressebeskyttelse": st.sampled_from(LEVELS),
    "skjermet": st.sampled_from([False, False, True]),
    "birth_date": st.sampled_from(BIRTH_DATES),
    "now": st.sampled_from(MOMENTS),
}


def _item(inputs: dict[str, Any]) -> Item:
    """A new participant (its own id) with these decision inputs."""
    birth_date = inputs["birth_date"]
    person = participant(inputs["owners"], birth_date=birth_date or date(1990, 1, 1))
    subject = Subject(inputs["adressebeskyttelse"], inputs["skjermet"], birth_date)
    context = Context(
        inputs["caller"],
        inputs["purpose"],
        inputs["relationships"],
        subject,
        inputs["grants"],
        inputs["now"],
    )
    return context, person


@st.composite
def batches(draw: st.DrawFn) -> tuple[Policy, list[Item]]:
    """A set of inputs or two, each given to two participants as it is and to one more for
    every input with that input changed, in any order: some items share every decision
    input, others differ in only one of them (the birth date, the grants, a flag, ...)."""
    items = []
    for _ in range(draw(st.integers(0, 2))):
        inputs = {name: draw(strategy) for name, strategy in INPUTS.items()}
        variants = [inputs, inputs]
        for name, strategy in INPUTS.items():
            other = draw(strategy.filter(lambda value, same=inputs[name]: value != same))
            variants.append({**inputs, name: other})
        items += [_item(variant) for variant in variants]
    return draw(POLICIES), draw(st.permutations(items))


def _dumps(projected: list[ParticipantRead | None]) -> list[dict[str, object] | None]:
    return [None if p is None else p.model_dump() for p in projected]


@settings(max_examples=100, deadline=None)
@given(batches())
def test_a_batch_decides_and_projects_each_record_as_one_by_one(
    case: tuple[Policy, list[Item]],
) -> None:
    policy, items = case
    one_by_one = [decide_participant(policy, context, person) for context, person in items]

    batched = decide_participants(policy, items)

    assert batched == one_by_one
    assert _dumps(
        [project_participant(person, d) for (_, person), d in zip(items, batched, strict=True)]
    ) == _dumps(
        [project_participant(person, d) for (_, person), d in zip(items, one_by_one, strict=True)]
    )


def test_participants_with_equal_decision_inputs_are_decided_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decide = project_module.decide
    calls = []

    def counting(policy: Policy, request: DecisionRequest) -> Decision:
        calls.append(request)
        return decide(policy, request)

    monkeypatch.setattr(project_module, "decide", counting)
    caller, shared = kontaktlaerer(), Grants((consent(grantor="participant", days=1),))
    owners = {"name": SCHOOL_ORG, "phone": NAV_ORG, "email": NAV_ORG}
    # Twenty adults of different ages; one who was 16 when the consent took effect (yesterday)
    # and one who turned 16 only today, so was 15 then (their own consent did not count);
    # and an adult decided tomorrow, when the consent has run out.
    took_effect = NOW.date() - timedelta(days=1)
    people = [(date(1980 + i, 1 + i % 12, 1 + i), NOW) for i in range(20)]
    people += [
        (took_effect.replace(year=took_effect.year - 16), NOW),
        (NOW.date().replace(year=NOW.year - 16), NOW),
        (date(1990, 1, 1), TOMORROW),
    ]
    items = []
    for birth_date, now in people:
        person = participant(owners, birth_date=birth_date)
        subject = subject_of(person)
        items.append(
            (Context(caller, "oppfolging", frozenset({"assigned"}), subject, shared, now), person)
        )

    decisions = decide_participants(POLICY, items)

    # The sixteen-year-old's consent counts like an adult's: the same decision inputs.
    assert len(calls) == 3
    assert all(d is decisions[0] for d in decisions[:21])
    adult, sixteen, fifteen, expired = decisions[0], *decisions[20:]
    assert adult.released == sixteen.released == ("name", "phone", "email")
    assert fifteen.released == expired.released == ("name",)
