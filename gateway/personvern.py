"""The personvern enforcement point on the request path: the policy, the consents it reads
and the audit log, used together by every route that answers with participant data.

    context = await personvern.context(caller, purpose, participant_id, relationships, subject)
    decision = decide_participant(personvern.policy, context, participant)
    await personvern.record(context, participant_id, [decision])   # before anything is sent

`record` returns once the audit entry is committed; if it cannot be written the request
fails with a 503 problem and nothing is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from fastapi import Depends, Header, Request

from gateway.audit import AuditCaller, AuditRecord, AuditWriter, ReleasedField, WithheldField
from gateway.deps import CallerDep
from gateway.policy import (
    PURPOSE_HEADER,
    ConsentSource,
    Context,
    Decision,
    Grants,
    Policy,
    Subject,
    gate_reason,
    read_grants,
    require_purpose,
)
from gateway.policy.consents import NONE
from gateway.policy.decide import CONSENT, LEGAL_BASIS, OWN_ORGANISATION
from shared.internal_auth import CallerContext
from shared.logs import current_request_id
from shared.metrics import POLICY_DECISIONS

T = TypeVar("T")


@dataclass(frozen=True)
class Personvern:
    policy: Policy
    consents: ConsentSource
    audit: AuditWriter

    async def grants(self, participant_id: uuid.UUID) -> Grants:
        """The participant's grants, read now (UNAVAILABLE if the source cannot answer)."""
        return (await read_grants(self.consents, [participant_id]))[participant_id]

    async def alongside_grants(
        self, participant_id: uuid.UUID, call: Awaitable[T]
    ) -> tuple[T, Grants]:
        """`call` (the upstream read) and the participant's grants, asked at the same time:
        both are read after the request began, so a withdrawal answered before it counts."""
        grants = asyncio.create_task(self.grants(participant_id))
        try:
            result = await call
        except BaseException:
            grants.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await grants
            raise
        return result, await grants

    async def context(
        self,
        caller: CallerContext,
        purpose: str,
        participant_id: uuid.UUID,
        relationships: Iterable[str],
        subject: Subject,
        grants: Grants | None = None,
    ) -> Context:
        """Everything the decision needs: the grants (read now unless given) and the
        moment of the request."""
        if grants is None:
            grants = await self.grants(participant_id)
        return Context(
            caller, purpose, frozenset(relationships), subject, grants, datetime.now(UTC)
        )

    def gate(
        self,
        caller: CallerContext,
        purpose: str,
        relationships: Iterable[str],
        subject: Subject,
    ) -> str | None:
        """Why the caller may work with nothing of the participant for `purpose`, or None
        (the part of the decision that needs no grants)."""
        context = Context(
            caller, purpose, frozenset(relationships), subject, NONE, datetime.now(UTC)
        )
        return gate_reason(self.policy, context)

    async def record(
        self, context: Context, participant_id: uuid.UUID, decisions: Iterable[Decision]
    ) -> None:
        """Append the decisions about one participant to the audit log, as one entry."""
        record = audit_record(context, participant_id, decisions, self.policy.version)
        await self.audit.write(record)
        count_decisions(record)


def count_decisions(record: AuditRecord) -> None:
    """The entry's field decisions in the metrics, by outcome and reason (the kind of basis
    for a release: own_organisation, consent or legal_basis)."""
    released = Counter(_reason_of_basis(field.basis) for field in record.released)
    withheld = Counter(field.reason for field in record.withheld)
    for reason, count in released.items():
        POLICY_DECISIONS.labels("released", reason).inc(count)
    for reason, count in withheld.items():
        POLICY_DECISIONS.labels("withheld", reason).inc(count)


def _reason_of_basis(basis: str) -> str:
    if basis.startswith("consent:"):
        return CONSENT
    if basis.startswith("legal:"):
        return LEGAL_BASIS
    return basis


def audit_record(
    context: Context,
    participant_id: uuid.UUID,
    decisions: Iterable[Decision],
    policy_version: str,
) -> AuditRecord:
    """One entry for the decisions about one participant in one request: each field named
    `<resource>.<field>` once per basis (a list repeats its fields record by record), with
    the precise reasons; `never` categories are not named."""
    released: dict[tuple[str, str, str, str | None], None] = {}
    withheld: dict[tuple[str, str, str], None] = {}
    for decision in decisions:
        for field in decision.fields:
            name = f"{decision.resource}.{field.field}"
            if field.release:
                released[(name, _basis(field.reason, field.basis), field.rule, field.owner)] = None
            elif field.listed:
                withheld[(name, field.reason, field.rule)] = None
    return AuditRecord(
        caller=AuditCaller.from_context(context.caller),
        participant_id=participant_id,
        purpose=context.purpose,
        released=tuple(ReleasedField(field=f, basis=b, rule=r, owner=o) for f, b, r, o in released),
        withheld=tuple(WithheldField(field=f, reason=why, rule=r) for f, why, r in withheld),
        policy_version=policy_version,
        request_id=current_request_id.get() or str(uuid.uuid4()),
    )


def _basis(reason: str, basis: str | None) -> str:
    if reason == CONSENT:
        return f"consent:{basis}"
    if reason == LEGAL_BASIS and basis:
        return basis  # already "legal:<reference>"
    if reason == OWN_ORGANISATION:
        return OWN_ORGANISATION
    return reason


async def get_personvern(request: Request) -> Personvern:
    personvern: Personvern = request.app.state.personvern
    return personvern


PersonvernDep = Annotated[Personvern, Depends(get_personvern)]


async def declared_purpose(
    caller: CallerDep,
    personvern: PersonvernDep,
    purpose: Annotated[
        str | None,
        Header(
            alias=PURPOSE_HEADER,
            description="Why you ask: one of the purposes your role may declare "
            "(oppfolging, inntak, kontakt, rapportering, tilrettelegging). A missing or "
            "refused purpose is a 400 problem listing the ones you may use.",
        ),
    ] = None,
) -> str:
    return require_purpose(personvern.policy, caller, purpose)


PurposeDep = Annotated[str, Depends(declared_purpose)]
