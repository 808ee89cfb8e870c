"""Programme statistics for the trial's leads (issue 8): counts of the programme places the
caller's organisation runs, by programme, county and status, with the outcomes reached,
small counts suppressed by the participant service before they leave it.

Staff read them with the role `auditor` or `trial_lead`; a system with `audit:read`, the
scope of the other oversight reads. They hold no participant, so no policy decision is made
and nothing is written to the audit log, which records decisions about one participant.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from gateway.clients import ParticipantsDep
from gateway.deps import require_scope
from gateway.innsyn import AUDITOR_ROLE
from services.participant.schemas import ProgrammeStatistics, StatisticsQuery
from shared.internal_auth import CallerContext
from shared.problems import Forbidden, problem_responses

TRIAL_LEAD_ROLE = "trial_lead"
STATISTICS_ROLES = frozenset({AUDITOR_ROLE, TRIAL_LEAD_ROLE})

router = APIRouter(
    prefix="/api/v1/statistics",
    tags=["statistics"],
    responses=problem_responses(401, 403, 422, 503),
)


class StatisticsRoleRequired(Forbidden):
    type = "statistics-role-required"
    title = "Only an auditor or a trial lead reads statistics"

    def __init__(self) -> None:
        super().__init__(
            "Staff read the statistics only with the role auditor or trial_lead; "
            "a system needs audit:read."
        )


@router.get("/programmes")
async def read_programme_statistics(
    caller: Annotated[CallerContext, Depends(require_scope("audit:read"))],
    query: Annotated[StatisticsQuery, Query()],
    client: ParticipantsDep,
) -> ProgrammeStatistics:
    """Your organisation's programme places starting in one calendar year, by programme,
    county and status, with the outcomes reached; counts under 5 suppressed."""
    staff_without_role = caller.kind == "staff" and not STATISTICS_ROLES & set(caller.roles)
    if caller.orgnr is None or staff_without_role:
        raise StatisticsRoleRequired()
    return await client.programme_statistics(caller, query)
