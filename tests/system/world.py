"""A small world for scenario tests: NAV and a school who both follow Kari."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from gateway.models import AuditEntry
from gateway.policy import Consent
from services.participant.schemas import StaffRead, UnitRead
from tests.system.conftest import Organisation, Stack

NAV = "889640782"
SKOLE = "310123455"
KARI = "15080551212"
SCOPES = [
    "participants:read",
    "participants:write",
    "events:write",
    "audit:read",
    "consents:read",
    "consents:write",
    "messages",
    "subscriptions",
]


@dataclass
class World:
    nav: Organisation
    skole: Organisation
    nav_unit: UnitRead
    veileder: StaffRead
    teacher: StaffRead
    other_teacher: StaffRead
    participant: str
    national_id: str

    @property
    def url(self) -> str:
        return f"/api/v1/participants/{self.participant}"


async def world(stack: Stack, *, national_id: str = KARI, **nav_values: object) -> World:
    """NAV and a school follow Kari: NAV registered her with its contact details and
    assigned a veileder; the school registered her and assigned a kontaktlærer."""
    nav = await stack.add_organisation(NAV, "nav", scopes=SCOPES)
    skole = await stack.add_organisation(SKOLE, "skole", scopes=SCOPES)
    nav_unit = await stack.add_unit(nav, name="NAV Grünerløkka", kind="nav_kontor")
    school_unit = await stack.add_unit(skole, name="Vg1", kind="skole")
    veileder = await stack.add_staff(nav, nav_unit, roles=("veileder",))
    teacher = await stack.add_staff(skole, school_unit, roles=("kontaktlaerer",))
    other_teacher = await stack.add_staff(skole, school_unit, roles=("kontaktlaerer",))
    registered = await stack.http.post(
        "/api/v1/participants",
        json={
            "national_id": national_id,
            "name": "Kari Nordmann",
            "phone": "+47 912 34 567",
            "email": "kari@nav.example",
            "source_system": "Arena",
            **nav_values,
        },
        headers=await stack.as_org(nav),
    )
    assert registered.status_code == 201, registered.text
    participant = registered.json()["id"]
    school_registered = await stack.http.post(
        "/api/v1/participants",
        json={"national_id": national_id, "name": "Kari N.", "source_system": "Visma InSchool"},
        headers=await stack.as_org(skole),
    )
    assert school_registered.status_code == 201, school_registered.text
    for organisation, role, staff in (
        (nav, "veileder", veileder),
        (skole, "kontaktlaerer", teacher),
    ):
        assigned = await stack.http.post(
            f"/api/v1/participants/{participant}/assignments",
            json={"role": role, "staff_id": str(staff.id)},
            headers=await stack.as_org(organisation),
        )
        assert assigned.status_code == 201, assigned.text
    return World(nav, skole, nav_unit, veileder, teacher, other_teacher, participant, national_id)


def consent(categories: tuple[str, ...], **overrides: object) -> Consent:
    values: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "grantor": "participant",
        "disclosers": frozenset({"nav", "skole"}),
        "recipients": frozenset({"nav", "skole"}),
        "categories": frozenset(categories),
        "purposes": frozenset({"oppfolging"}),
        "valid_from": datetime.now(UTC) - timedelta(days=1),
    }
    values.update(overrides)
    return Consent(**values)  # type: ignore[arg-type]


async def entries(stack: Stack) -> list[dict[str, object]]:
    async with stack.gateway.state.sessionmaker() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.seq))).all()
    return [{"participant_id": r.participant_id, **json.loads(r.content)} for r in rows]


def shown(body: dict[str, object]) -> dict[str, str]:
    return {w["field"]: w["reason"] for w in body["withheld"]}  # type: ignore[attr-defined,index]
