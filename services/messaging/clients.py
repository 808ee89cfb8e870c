"""The participant service, as messaging reads it: who holds a role for a participant now,
and which slots a staff member holds. Called with messaging's own internal token."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from services.participant.schemas import Caseload, Holder, HoldersAnswer, HoldersQuery, Slot
from shared.clients import Upstream, UpstreamProblem
from shared.internal_auth import CallerContext
from shared.problems import ServiceUnavailable

MESSAGING_ITSELF = CallerContext(kind="service", client_id="messaging")


class Assignments:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def holders(self, slots: Sequence[Slot]) -> dict[Slot, Holder]:
        """The current holder of each slot that has one."""
        if not slots:
            return {}
        body = HoldersQuery(slots=list(slots)).model_dump_json().encode()
        answer, _ = await self.upstream.fetch(
            HoldersAnswer, "POST", "/internal/v1/holders", MESSAGING_ITSELF, content=body
        )
        return {slot_of(holder): holder for holder in answer.holders if holder.role is not None}

    async def caseload(self, staff_id: uuid.UUID) -> Caseload:
        try:
            found, _ = await self.upstream.fetch(
                Caseload, "GET", f"/internal/v1/staff/{staff_id}/caseload", MESSAGING_ITSELF
            )
        except UpstreamProblem:
            # A staff token names a staff member the directory must know; if it does not,
            # the directory and the token disagree: refuse rather than guess.
            raise ServiceUnavailable("The staff directory does not know the caller.") from None
        return found

    async def aclose(self) -> None:
        await self.upstream.aclose()


def slot_of(holder: Holder) -> Slot:
    assert holder.role is not None
    return Slot(participant_id=holder.participant_id, orgnr=holder.orgnr, role=holder.role)
