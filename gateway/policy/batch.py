"""Many participant records at once (a bulk check): the same decisions as one by one, with
each distinct set of decision inputs decided only once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from gateway.policy.consents import Grants
from gateway.policy.decide import Context, Decision, consent_counts
from gateway.policy.document import Policy
from gateway.policy.project import decide_participant
from services.participant.schemas import ATTRIBUTE_FIELDS, ParticipantRead
from shared.internal_auth import CallerContext

_Key = tuple[
    CallerContext,
    str,
    frozenset[str],
    str | None,
    bool,
    tuple[bool, ...],
    Grants,
    datetime,
    tuple[tuple[str, str] | None, ...],
]


def decide_participants(
    policy: Policy, items: Sequence[tuple[Context, ParticipantRead]]
) -> list[Decision]:
    """`decide_participant` for each (context, participant), in order; items whose decision
    inputs are equal share one Decision object (it is frozen)."""
    memo: dict[_Key, Decision] = {}
    decisions = []
    for context, participant in items:
        key = _decision_inputs(policy, context, participant)
        decision = memo.get(key)
        if decision is None:
            decision = memo[key] = decide_participant(policy, context, participant)
        decisions.append(decision)
    return decisions


def _decision_inputs(policy: Policy, context: Context, participant: ParticipantRead) -> _Key:
    """Everything `decide_participant` reads, so that equal keys mean equal decisions
    (`decide` is pure, and the policy is the same for the whole batch).

    Of the record it reads only who holds each attribute field (orgnr and agency type, or
    nobody). Of the context's subject (not the record's values) it reads the two flags, and
    the birth date only through whether each consent counts (`consent_counts`: the age
    band when it took effect, and adulthood now for a guardian's), so records differing
    only in birth date share a decision when those agree. The caller, purpose,
    relationships and grants are taken whole (a consent's id is a released field's basis).
    `now` is taken whole too, because it decides which consents and legal bases are in
    force and the age band; a bulk check decides at one moment, so it costs no sharing.
    """
    owners: list[tuple[str, str] | None] = []
    for field in ATTRIBUTE_FIELDS:
        held = participant.provenance.get(field)
        owners.append(None if held is None else (held.owner_orgnr, held.owner_agency_type))
    subject = context.subject
    return (
        context.caller,
        context.purpose,
        context.relationships,
        subject.adressebeskyttelse,
        subject.skjermet,
        tuple(
            consent_counts(policy, subject, context.purpose, consent, context.now)
            for consent in context.grants.consents
        ),
        context.grants,
        context.now,
        tuple(owners),
    )
