"""The audit log's public face: its latest signed head and the keys that verify heads."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from gateway import audit
from gateway.deps import require_scope
from shared.db import SessionDep
from shared.internal_auth import CallerContext
from shared.problems import NotFound, problem_responses

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditHeadNotSigned(NotFound):
    type = "audit-head-not-signed"
    title = "No audit head signed yet"

    def __init__(self) -> None:
        super().__init__("The gateway has not signed a head of the audit log yet.")


class SignedHeadRead(BaseModel):
    seq: int
    hash: str
    time: str
    kid: str
    # Compact JWS (Ed25519); its payload holds seq, hash and time. Verify it with /keys.
    jws: str


def audit_keys(request: Request) -> audit.AuditKeys:
    """The gateway's audit keys, loaded at start."""
    keys: audit.AuditKeys = request.app.state.audit_keys
    return keys


@router.get("/head", responses=problem_responses(401, 403, 404))
async def read_audit_head(
    _: Annotated[CallerContext, Depends(require_scope("audit:read"))],
    session: SessionDep,
) -> SignedHeadRead:
    """The latest signed head of the audit chain."""
    head = await audit.latest_signed_head(session)
    if head is None:
        raise AuditHeadNotSigned()
    return SignedHeadRead.model_validate(head.as_json())


@router.get("/keys", responses=problem_responses(401, 403))
async def read_audit_keys(
    _: Annotated[CallerContext, Depends(require_scope("audit:read"))],
    keys: Annotated[audit.AuditKeys, Depends(audit_keys)],
) -> dict[str, Any]:
    """The public keys that verify audit heads (JWKS), with their validity periods."""
    return keys.public_jwks()
