"""Innsyn: who has seen what about a participant, and why — read from the audit log.

The participant (or their guardian, except for a minor with strengt fortrolig adresse,
whose protection may be from the family) reads their entries (`GET /api/v1/me/access-log`,
citizen token): who
(organisation, unit, role), when, why (the purpose), which fields were released and on what
basis, and which were withheld. An auditor of a data controller reads the entries of its own
organisation (`GET /api/v1/audit/entries`): those where it asked, and those where its values
crossed to another organisation.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from gateway import store
from gateway.clients import ParticipantClient
from gateway.deps import CallerDep, require_scope
from shared.db import SessionDep
from shared.internal_auth import CallerContext
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit, decode_cursor, encode_cursor
from shared.problems import Forbidden, ValidationProblem, problem_responses

AUDITOR_ROLE = "auditor"
STRENGT_FORTROLIG = frozenset({"strengt_fortrolig", "strengt_fortrolig_utland"})

router = APIRouter(prefix="/api/v1", responses=problem_responses(401, 403, 422))


class CitizenTokenRequired(Forbidden):
    type = "citizen-token-required"
    title = "A citizen token is required"

    def __init__(self) -> None:
        super().__init__("Only the participant, with their own token, reads their access log.")


class AuditorRequired(Forbidden):
    type = "auditor-required"
    title = "Only an auditor reads the audit log"

    def __init__(self) -> None:
        super().__init__(
            "Staff read the audit log only with the auditor role; a system needs audit:read."
        )


class Organisation(BaseModel):
    orgnr: str | None
    name: str | None = Field(description="As registered in Broen; null if no longer known.")
    agency_type: str | None


class ReleasedRead(BaseModel):
    field: str = Field(description="`<resource>.<field>`, e.g. participant.phone")
    basis: str = Field(description="consent:<id>, legal:<reference> or own_organisation")


class WithheldRead(BaseModel):
    field: str
    reason: str


class AccessRead(BaseModel):
    time: datetime
    organisation: Organisation
    unit_id: str | None
    roles: list[str]
    acting_as: Literal["system", "staff", "operator"] = Field(
        description="An organisation's system, a staff member of it, or Broen's operator "
        "deleting the data under the retention rules or for erasure."
    )
    purpose: str
    released: list[ReleasedRead]
    withheld: list[WithheldRead]
    policy_version: str


class AccessLog(BaseModel):
    items: list[AccessRead]
    next_cursor: str | None = None


class AuditEntryRead(BaseModel):
    """An entry as the audit log holds it (gateway/audit.py documents every member)."""

    seq: int
    participant_id: uuid.UUID
    caller_orgnr: str | None
    content: dict[str, Any]


class AuditEntryList(BaseModel):
    items: list[AuditEntryRead]
    next_cursor: str | None = None


def _before(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    [seq] = decode_cursor(cursor, 1)
    if not isinstance(seq, int) or seq < 1:
        raise ValidationProblem("The cursor is not one this API gave out.")
    return seq


def _next_cursor(rows: list[Any], limit: int) -> str | None:
    return encode_cursor(rows[-1][0]) if len(rows) == limit else None


@router.get("/me/access-log", tags=["innsyn"])
async def read_access_log(
    request: Request,
    caller: CallerDep,
    session: SessionDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> AccessLog:
    """Who has seen what about you, when, why and on what basis; newest first."""
    if caller.kind != "citizen" or caller.participant_id is None:
        raise CitizenTokenRequired()
    client: ParticipantClient = request.app.state.participant_client
    if caller.acting_as == "guardian" and await _hidden_from_family(client, caller):
        # The protection may be from the family: the guardian learns nothing, not even that.
        return AccessLog(items=[], next_cursor=None)
    rows = list(
        await store.audit_entries_about(
            session, participant_id=caller.participant_id, before=_before(cursor), limit=limit
        )
    )
    contents = [json.loads(row[3]) for row in rows]
    names = await _organisation_names(client, caller, {row[2] for row in rows if row[2]})
    items = [_access(content, row[2], names) for row, content in zip(rows, contents, strict=True)]
    return AccessLog(items=items, next_cursor=_next_cursor(rows, limit))


def _access(content: dict[str, Any], orgnr: str | None, names: dict[str, str]) -> AccessRead:
    who = content["caller"]
    return AccessRead(
        time=content["time"],
        organisation=Organisation(
            orgnr=orgnr, name=names.get(orgnr or ""), agency_type=who["agency_type"]
        ),
        unit_id=who["unit_id"],
        roles=who["roles"],
        acting_as=who["kind"],
        purpose=content["purpose"],
        released=[ReleasedRead(field=r["field"], basis=r["basis"]) for r in content["released"]],
        withheld=[WithheldRead(field=w["field"], reason=w["reason"]) for w in content["withheld"]],
        policy_version=content["policy_version"],
    )


async def _hidden_from_family(client: ParticipantClient, caller: CallerContext) -> bool:
    """Whether the participant has strengt fortrolig adresse (kode 6)."""
    answer = await client.read(caller, uuid.UUID(str(caller.participant_id)))
    return answer.participant.adressebeskyttelse in STRENGT_FORTROLIG


async def _organisation_names(
    client: ParticipantClient, caller: CallerContext, orgnrs: set[str]
) -> dict[str, str]:
    found = await asyncio.gather(*(client.read_organisation(caller, o) for o in sorted(orgnrs)))
    return {organisation.orgnr: organisation.name for organisation in found if organisation}


@router.get("/audit/entries", tags=["audit"])
async def list_audit_entries(
    caller: Annotated[CallerContext, Depends(require_scope("audit:read"))],
    session: SessionDep,
    participant_id: uuid.UUID | None = Query(None, description="Only entries about them."),
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> AuditEntryList:
    """Your organisation's entries, newest first: where it asked, and where its values
    crossed to another organisation. Staff need the auditor role."""
    if caller.orgnr is None or (caller.kind == "staff" and AUDITOR_ROLE not in caller.roles):
        raise AuditorRequired()
    rows = list(
        await store.audit_entries_of_organisation(
            session,
            orgnr=caller.orgnr,
            participant_id=str(participant_id) if participant_id else None,
            before=_before(cursor),
            limit=limit,
        )
    )
    items = [
        AuditEntryRead(
            seq=seq, participant_id=uuid.UUID(pid), caller_orgnr=orgnr, content=json.loads(content)
        )
        for seq, pid, orgnr, content in rows
    ]
    return AuditEntryList(items=items, next_cursor=_next_cursor(rows, limit))
