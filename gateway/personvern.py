"""The personvern hook: every participant resource passes here before it leaves the gateway.

Until the policy document lands, the rule is the fail-closed one: a caller sees only the
values its own organisation recorded, about participants it has a relationship with (it
registered them, has an assignment or a programme participation).
Everything else is withheld as `not_shared`. The policy will replace `decide_field`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

from services.participant.schemas import ATTRIBUTE_FIELDS, ParticipantRead, Withheld
from shared.internal_auth import CallerContext

NOT_SHARED = "not_shared"


@dataclass(frozen=True)
class Decision:
    field: str
    release: bool
    reason: str
    rule: str


def decide_field(caller: CallerContext, participant: ParticipantRead, field: str) -> Decision:
    provenance = participant.provenance.get(field)
    if provenance is not None and caller.orgnr and provenance.owner_orgnr == caller.orgnr:
        return Decision(field, True, "own_record", "foundation.own-organisation")
    return Decision(field, False, NOT_SHARED, "foundation.fail-closed")


def project_participant(
    caller: CallerContext, participant: ParticipantRead, *, relationships: frozenset[str]
) -> ParticipantRead | None:
    """The participant as this caller may see it, or None when the caller may see nothing
    (answered exactly like an unknown participant: no existence oracle)."""
    if not relationships:
        return None
    decisions = [decide_field(caller, participant, field) for field in ATTRIBUTE_FIELDS]
    released = {d.field for d in decisions if d.release}
    values = participant.model_dump(include=released)
    return ParticipantRead(
        id=participant.id,
        provenance={f: p for f, p in participant.provenance.items() if f in released},
        withheld=[Withheld(field=d.field, reason=d.reason) for d in decisions if not d.release],
        **values,
    )


class OwnedRecord(Protocol):
    @property
    def orgnr(self) -> str:
        """The organisation that recorded it."""
        ...


R = TypeVar("R", bound=OwnedRecord)


def project_records(caller: CallerContext, records: list[R]) -> list[R]:
    """Records an organisation made about a participant (assignments, programme places,
    timeline events): the caller sees its own organisation's; the rest are left out."""
    return [record for record in records if caller.orgnr and record.orgnr == caller.orgnr]
