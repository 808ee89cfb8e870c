"""Where the decision's consents and legal bases come from.

The decision itself never reads them: the gateway asks a ConsentSource before deciding and
passes the answer in as `Grants`, so a decision stays pure. The consent service will be one
source (issue 5); `GivenGrants` holds grants given to it, for tests and until then.
A source that cannot answer raises ConsentUnavailable; `read_grants` turns that into
`UNAVAILABLE`, and the decision withholds what would cross agencies (fail closed).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Grantor = Literal["participant", "guardian", "representative"]


@dataclass(frozen=True, slots=True)
class Consent:
    """A consent in force, as the decision needs it (API.md "Consent").

    Parties are agency types (`nav`, `skole`, ...) or organisation numbers: "NAV and the
    school may exchange information about me" is one consent with both in both lists."""

    id: str
    grantor: Grantor
    disclosers: frozenset[str]
    recipients: frozenset[str]
    categories: frozenset[str]
    purposes: frozenset[str]
    valid_from: datetime
    valid_to: datetime | None = None

    def in_force(self, now: datetime) -> bool:
        return self.valid_from <= now and (self.valid_to is None or now < self.valid_to)


@dataclass(frozen=True, slots=True)
class LegalBasis:
    """A reference in the legal-basis registry; a policy's `legal:<ref>` flows name it."""

    ref: str
    valid_from: datetime
    valid_to: datetime | None = None

    def in_force(self, now: datetime) -> bool:
        return self.valid_from <= now and (self.valid_to is None or now < self.valid_to)


@dataclass(frozen=True, slots=True)
class Grants:
    """The consents about one participant and the legal bases, as read for one decision.
    `available` is False when the source could not answer: nothing crosses on consent or
    law then, and nothing is served from an older copy."""

    consents: tuple[Consent, ...] = ()
    legal_bases: tuple[LegalBasis, ...] = ()
    available: bool = True


NONE = Grants()
UNAVAILABLE = Grants(available=False)


class ConsentUnavailable(Exception):
    """The consent source could not answer (unreachable, timed out, refused)."""


class ConsentSource(Protocol):
    async def grants_for(self, participant_ids: Sequence[uuid.UUID]) -> Mapping[uuid.UUID, Grants]:
        """The consents (all those not withdrawn; the decision checks their periods) and the
        legal bases, per participant, in one call; raises ConsentUnavailable."""
        ...


async def read_grants(
    source: ConsentSource, participant_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Grants]:
    """Grants per participant; every one UNAVAILABLE when the source cannot answer."""
    try:
        found = await source.grants_for(participant_ids)
    except ConsentUnavailable:
        return {participant_id: UNAVAILABLE for participant_id in participant_ids}
    return {participant_id: found.get(participant_id, NONE) for participant_id in participant_ids}


@dataclass
class GivenGrants:
    """A ConsentSource holding the grants given to it: for tests, and until the consent
    service is wired in. `available = False` makes it behave like an unreachable service."""

    consents: dict[uuid.UUID, list[Consent]] = field(default_factory=dict)
    legal_bases: list[LegalBasis] = field(default_factory=list)
    available: bool = True

    def give(self, participant_id: uuid.UUID, *consents: Consent) -> None:
        self.consents.setdefault(participant_id, []).extend(consents)

    def withdraw(self, consent_id: str) -> None:
        for held in self.consents.values():
            held[:] = [c for c in held if c.id != consent_id]

    def register(self, *bases: LegalBasis) -> None:
        self.legal_bases.extend(bases)

    async def grants_for(self, participant_ids: Sequence[uuid.UUID]) -> Mapping[uuid.UUID, Grants]:
        if not self.available:
            raise ConsentUnavailable("the consent source is switched off")
        bases = tuple(self.legal_bases)
        return {
            participant_id: Grants(tuple(self.consents.get(participant_id, ())), bases)
            for participant_id in participant_ids
        }
