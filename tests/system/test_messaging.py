"""Messaging through the whole stack: a teacher reaches "the veileder" of a participant,
routed from the assignments, gated by the policy's basis for `messages`, sealed at rest and
audited per delivery. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from services.messaging.models import Message, OutboxEvent, Thread
from services.messaging.overdue import report_overdue
from services.participant.schemas import StaffRead
from tests.system.conftest import Stack
from tests.system.world import World, entries, world

pytestmark = pytest.mark.anyio

MESSAGING = ("participants:read", "participants:write", "messages")
QUESTION = "Kari har vært borte mye i det siste. Kan vi ta en prat om oppfølgingen hennes?"


def staff(stack: Stack, w: World, person: StaffRead) -> dict[str, str]:
    organisation = w.nav if person.orgnr == w.nav.orgnr else w.skole
    return stack.as_staff(organisation, person, purpose=None, scopes=MESSAGING)


async def consent_to_messages(stack: Stack, w: World) -> str:
    """Kari lets NAV and her school exchange messages about her for follow-up."""
    asked = await stack.http.post(
        "/api/v1/consent-requests",
        json={
            "participant_id": w.participant,
            "disclosers": ["nav", "skole"],
            "recipients": ["nav", "skole"],
            "purposes": ["oppfolging"],
            "categories": ["messages"],
            "justification": "Skolen og NAV vil snakke sammen om oppfølgingen din.",
        },
        headers=await stack.as_org(w.skole),
    )
    assert asked.status_code == 201, asked.text
    accepted = await stack.http.post(
        f"/api/v1/me/consent-requests/{asked.json()['id']}/accept",
        headers=stack.as_citizen(w.participant),
    )
    assert accepted.status_code == 201, accepted.text
    return str(accepted.json()["id"])


def thread_body(w: World, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "participant_id": w.participant,
        "purpose": "oppfolging",
        "to": {"role": "veileder"},
        "subject": "Fravær i norsk",
        "body": QUESTION,
    }
    body.update(overrides)
    return body


async def open_thread(stack: Stack, w: World, **overrides: Any) -> dict[str, Any]:
    opened = await stack.http.post(
        "/api/v1/threads", json=thread_body(w, **overrides), headers=staff(stack, w, w.teacher)
    )
    assert opened.status_code == 201, opened.text
    return dict(opened.json())


async def inbox(stack: Stack, w: World, person: StaffRead, **params: Any) -> list[dict[str, Any]]:
    found = await stack.http.get(
        "/api/v1/threads", params=params, headers=staff(stack, w, person)
    )
    assert found.status_code == 200, found.text
    return list(found.json()["items"])


async def stored_threads(stack: Stack) -> int:
    async with stack.messaging.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Thread)) or 0)


async def assign(stack: Stack, w: World, **assignee: str) -> None:
    assigned = await stack.http.post(
        f"{w.url}/assignments",
        json={"role": "veileder", **assignee},
        headers=await stack.as_org(w.nav),
    )
    assert assigned.status_code == 201, assigned.text


# --- the story ---------------------------------------------------------------------------------


async def test_a_kontaktlaerer_messages_the_veileder_and_the_assigned_veileder_receives_it(
    stack: Stack,
) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)

    thread = await open_thread(stack, w)

    assert thread["me"] == "initiator"
    assert thread["recipient"]["role"] == "veileder"
    assert thread["recipient"]["unit_handle"].startswith("nav-grunerlokka-")
    assert thread["waiting_on"] == "recipient" and not thread["waiting_on_me"]
    [received] = await inbox(stack, w, w.veileder)
    assert received["id"] == thread["id"]
    assert received["me"] == "recipient"
    assert received["subject"] == "Fravær i norsk"
    assert received["unread"] == 1 and received["waiting_on_me"]
    assert received["recipient"]["staff_id"] == str(w.veileder.id)  # her own organisation
    messages = await stack.http.get(
        f"/api/v1/threads/{thread['id']}/messages", headers=staff(stack, w, w.veileder)
    )
    assert [m["body"] for m in messages.json()["items"]] == [QUESTION]

    # She reads and answers; the teacher sees the receipt and the answer.
    read = await stack.http.post(
        f"/api/v1/threads/{thread['id']}/read", headers=staff(stack, w, w.veileder)
    )
    assert read.json()["unread"] == 0
    reply = await stack.http.post(
        f"/api/v1/threads/{thread['id']}/messages",
        json={"body": "Ja, jeg ringer deg i morgen."},
        headers=staff(stack, w, w.veileder),
    )
    assert reply.status_code == 201, reply.text
    [seen] = await inbox(stack, w, w.teacher)
    assert seen["unread"] == 1 and seen["waiting_on_me"] and seen["message_count"] == 2
    conversation = await stack.http.get(
        f"/api/v1/threads/{thread['id']}/messages", headers=staff(stack, w, w.teacher)
    )
    first, answer = conversation.json()["items"]
    assert first["mine"] and first["read_by_other_side"]
    assert not answer["mine"] and answer["body"] == "Ja, jeg ringer deg i morgen."


async def test_with_no_veileder_assigned_the_nav_units_inbox_receives_it(stack: Stack) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)
    await assign(stack, w, unit_id=str(w.nav_unit.id))  # NAV's office, nobody in person
    contact = await stack.add_staff(w.nav, w.nav_unit, roles=("kontaktperson",))
    colleague = await stack.add_staff(w.nav, w.nav_unit, roles=("veileder",))

    thread = await open_thread(stack, w)

    assert thread["recipient"]["staff_id"] is None
    assert [t["id"] for t in await inbox(stack, w, contact)] == [thread["id"]]
    assert await inbox(stack, w, colleague) == []  # a veileder of the unit is not its inbox
    assert await inbox(stack, w, w.veileder) == []  # no longer assigned

    # The office assigns a veileder: the thread follows the role to her.
    await assign(stack, w, staff_id=str(colleague.id))
    assert [t["id"] for t in await inbox(stack, w, colleague)] == [thread["id"]]
    assert await inbox(stack, w, contact) == []


async def test_after_reassignment_the_new_veileder_has_the_thread_and_the_old_one_gets_404(
    stack: Stack,
) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)
    thread = await open_thread(stack, w)
    successor = await stack.add_staff(w.nav, w.nav_unit, roles=("veileder",))

    await assign(stack, w, staff_id=str(successor.id))  # the benefit changed, so did the veileder

    [followed] = await inbox(stack, w, successor)
    assert followed["id"] == thread["id"] and followed["unread"] == 1
    gone = await stack.http.get(
        f"/api/v1/threads/{thread['id']}", headers=staff(stack, w, w.veileder)
    )
    assert gone.status_code == 404
    assert gone.json()["type"].endswith("/thread-not-found")
    assert await inbox(stack, w, w.veileder) == []
    recorded = await stack.http.get(
        f"/api/v1/threads/{thread['id']}", headers=staff(stack, w, successor)
    )
    [handover] = recorded.json()["handovers"]
    assert handover["from_staff_id"] == str(w.veileder.id)
    assert handover["to_staff_id"] == str(successor.id)
    # The teacher sees that the thread changed hands, and who has it only with a basis
    # for NAV's follow-up information (here there is none).
    as_teacher = await stack.http.get(
        f"/api/v1/threads/{thread['id']}", headers=staff(stack, w, w.teacher)
    )
    assert len(as_teacher.json()["handovers"]) == 1
    assert as_teacher.json()["recipient"]["staff_id"] is None
    answered = await stack.http.post(
        f"/api/v1/threads/{thread['id']}/messages",
        json={"body": "Jeg har overtatt Kari, la oss snakkes."},
        headers=staff(stack, w, successor),
    )
    assert answered.status_code == 201, answered.text


# --- personvern -------------------------------------------------------------------------------


async def test_without_consent_the_teacher_gets_403_that_says_what_is_missing_and_nothing_is_stored(
    stack: Stack,
) -> None:
    w = await world(stack)

    refused = await stack.http.post(
        "/api/v1/threads", json=thread_body(w), headers=staff(stack, w, w.teacher)
    )

    assert refused.status_code == 403
    problem = refused.json()
    assert problem["type"].endswith("/no-basis-for-messages")
    assert "consent" in problem["detail"] and "oppfolging" in problem["detail"]
    assert (problem["category"], problem["purpose"]) == ("messages", "oppfolging")
    assert await stored_threads(stack) == 0
    # Whether anyone holds the role does not change the answer (no oracle of NAV's knowledge).
    nobody = await stack.http.post(
        "/api/v1/threads",
        json=thread_body(w, to={"role": "ot_radgiver"}),
        headers=staff(stack, w, w.teacher),
    )
    assert (nobody.status_code, nobody.json()["detail"]) == (403, problem["detail"])


async def test_a_withdrawn_consent_stops_new_messages_and_keeps_delivered_ones_readable(
    stack: Stack,
) -> None:
    w = await world(stack)
    consent_id = await consent_to_messages(stack, w)
    thread = await open_thread(stack, w)

    withdrawn = await stack.http.post(
        f"/api/v1/me/consents/{consent_id}/withdraw", headers=stack.as_citizen(w.participant)
    )
    assert withdrawn.status_code == 200, withdrawn.text

    for sender in (w.veileder, w.teacher):
        refused = await stack.http.post(
            f"/api/v1/threads/{thread['id']}/messages",
            json={"body": "En melding til."},
            headers=staff(stack, w, sender),
        )
        assert refused.status_code == 403, refused.text
    delivered = await stack.http.get(
        f"/api/v1/threads/{thread['id']}/messages", headers=staff(stack, w, w.veileder)
    )
    assert [m["body"] for m in delivered.json()["items"]] == [QUESTION]
    async with stack.messaging.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 1


async def test_a_national_id_in_the_body_is_refused_with_its_position_not_its_value(
    stack: Stack,
) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)
    body = f"Gjelder eleven med fnr {w.national_id[:6]} {w.national_id[6:]}, se under."

    refused = await stack.http.post(
        "/api/v1/threads", json=thread_body(w, body=body), headers=staff(stack, w, w.teacher)
    )

    assert refused.status_code == 422
    assert w.national_id[:6] not in refused.text and w.national_id[6:] not in refused.text
    [error] = refused.json()["errors"]
    assert error["field"] == "body" and error["code"] == "national_id_in_text"
    assert error["position"] == body.index(w.national_id[:6])
    assert "refer to the participant by the thread" in error["message"]
    assert await stored_threads(stack) == 0


async def test_subjects_and_bodies_are_sealed_at_rest(stack: Stack) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)
    await open_thread(stack, w)

    async with stack.messaging.state.sessionmaker() as session:
        rows = (await session.execute(text("SELECT * FROM messages"))).all()
        rows += (await session.execute(text("SELECT * FROM threads"))).all()
    stored = b"".join(
        value if isinstance(value, bytes) else str(value).encode() for row in rows for value in row
    )
    assert QUESTION.encode() not in stored and "Fravær i norsk".encode() not in stored
    assert b"borte mye" not in stored


async def test_every_delivery_across_agencies_is_an_audit_entry_without_text(
    stack: Stack,
) -> None:
    w = await world(stack)
    consent_id = await consent_to_messages(stack, w)
    before = len(await entries(stack))
    thread = await open_thread(stack, w)
    await stack.http.post(
        f"/api/v1/threads/{thread['id']}/messages",
        json={"body": "Ja, jeg ringer deg i morgen."},
        headers=staff(stack, w, w.veileder),
    )

    delivered = (await entries(stack))[before:]
    to_nav, to_school = [e for e in delivered if e["purpose"] == "oppfolging"][-2:]
    assert to_nav["caller"]["agency_type"] == "nav"  # the receiving side
    assert to_nav["caller"]["staff_id"] == str(w.veileder.id)
    assert {(r["field"], r["basis"], r["owner"]) for r in to_nav["released"]} == {
        ("message.subject", f"consent:{consent_id}", w.skole.orgnr),
        ("message.body", f"consent:{consent_id}", w.skole.orgnr),
    }
    assert to_school["caller"]["agency_type"] == "skole"
    assert [r["field"] for r in to_school["released"]] == ["message.body"]
    assert "ringer" not in str(delivered) and "borte" not in str(delivered)
    # Kari sees that NAV received a message about her, and on which consent.
    log = await stack.http.get("/api/v1/me/access-log", headers=stack.as_citizen(w.participant))
    received = [
        item
        for item in log.json()["items"]
        if {"field": "message.body", "basis": f"consent:{consent_id}"} in item["released"]
    ]
    assert {item["organisation"]["orgnr"] for item in received} == {w.nav.orgnr, w.skole.orgnr}


async def test_destroying_the_participants_data_key_shreds_their_messages(stack: Stack) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)
    thread = await open_thread(stack, w)

    async with stack.messaging.state.sessionmaker.begin() as session:
        await session.execute(text("DELETE FROM participant_keys"))

    shredded = await stack.http.get(
        f"/api/v1/threads/{thread['id']}/messages", headers=staff(stack, w, w.veileder)
    )
    assert shredded.status_code == 200
    assert [m["body"] for m in shredded.json()["items"]] == [""]
    [listed] = await inbox(stack, w, w.veileder)
    assert listed["subject"] == ""


async def test_for_strengt_fortrolig_the_school_sees_navs_routing_handle_and_the_message_arrives(
    stack: Stack,
) -> None:
    w = await world(stack, adressebeskyttelse="strengt_fortrolig", address=None)
    await consent_to_messages(stack, w)

    thread = await open_thread(stack, w)

    assert thread["recipient"]["unit_handle"].startswith("nav-ruting-")
    [received] = await inbox(stack, w, w.veileder)
    assert received["recipient"]["unit_handle"].startswith("nav-grunerlokka-")  # NAV's own view
    # The school may address the unit by the handle it was shown.
    by_handle = await open_thread(stack, w, to={"unit_handle": thread["recipient"]["unit_handle"]})
    assert by_handle["recipient"]["unit_handle"] == thread["recipient"]["unit_handle"]


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "kind"),
    [
        ({"to": {"role": "rektor"}}, 422, "validation-error"),
        ({"to": {"unit_id": str(uuid.uuid4())}}, 422, "unknown-unit"),
        ({"to": {}}, 422, "validation-error"),
        ({"body": "   "}, 422, "validation-error"),
        ({"body": "x" * 10_001}, 422, "validation-error"),
        ({"subject": ""}, 422, "validation-error"),
        ({"purpose": "inntak"}, 400, "purpose-not-allowed"),
        ({"participant_id": str(uuid.uuid4())}, 404, "participant-not-found"),
    ],
)
async def test_bad_input_gets_a_clear_problem_and_stores_nothing(
    stack: Stack, change: dict[str, Any], status: int, kind: str
) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)

    refused = await stack.http.post(
        "/api/v1/threads", json=thread_body(w, **change), headers=staff(stack, w, w.teacher)
    )

    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/" + kind)
    assert await stored_threads(stack) == 0


async def test_a_participant_the_teacher_does_not_follow_is_not_found(stack: Stack) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)

    refused = await stack.http.post(
        "/api/v1/threads", json=thread_body(w), headers=staff(stack, w, w.other_teacher)
    )

    assert refused.status_code == 404
    assert refused.json()["type"].endswith("/participant-not-found")
    other = str(w.other_teacher.id)
    [tried] = [e for e in await entries(stack) if e["caller"]["staff_id"] == other]
    assert tried["released"] == [] and tried["participant_id"] == w.participant


async def test_a_thread_that_is_not_the_callers_is_not_found(stack: Stack) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)
    thread = await open_thread(stack, w)

    for attempt in (
        stack.http.get(f"/api/v1/threads/{thread['id']}", headers=staff(stack, w, w.other_teacher)),
        stack.http.post(
            f"/api/v1/threads/{thread['id']}/messages",
            json={"body": "Hei"},
            headers=staff(stack, w, w.other_teacher),
        ),
        stack.http.post(
            f"/api/v1/threads/{thread['id']}/read", headers=staff(stack, w, w.other_teacher)
        ),
    ):
        answer = await attempt
        assert answer.status_code == 404, answer.text
    assert await inbox(stack, w, w.other_teacher) == []


async def test_a_closed_thread_takes_no_new_messages(stack: Stack) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)
    thread = await open_thread(stack, w)

    closed = await stack.http.post(
        f"/api/v1/threads/{thread['id']}/close", headers=staff(stack, w, w.veileder)
    )
    assert closed.status_code == 200 and closed.json()["closed_at"] is not None

    refused = await stack.http.post(
        f"/api/v1/threads/{thread['id']}/messages",
        json={"body": "En til?"},
        headers=staff(stack, w, w.teacher),
    )
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/thread-closed")


# --- the inbox --------------------------------------------------------------------------------


async def test_the_inbox_filters_and_pages_with_a_cursor(stack: Stack) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)
    opened = [await open_thread(stack, w, subject=f"Sak {n}") for n in range(5)]
    answered = opened[1]
    await stack.http.post(
        f"/api/v1/threads/{answered['id']}/messages",
        json={"body": "Svar."},
        headers=staff(stack, w, w.veileder),
    )

    pages, cursor = [], None
    while True:
        page = await stack.http.get(
            "/api/v1/threads",
            params={"limit": 2, **({"cursor": cursor} if cursor else {})},
            headers=staff(stack, w, w.veileder),
        )
        pages.append([t["id"] for t in page.json()["items"]])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    listed = [thread_id for page in pages for thread_id in page]
    assert listed[0] == answered["id"]  # latest activity first
    assert sorted(listed) == sorted(t["id"] for t in opened)

    waiting = await inbox(stack, w, w.veileder, waiting_on_me="true")
    assert answered["id"] not in {t["id"] for t in waiting} and len(waiting) == 4
    unread = await inbox(stack, w, w.teacher, unread="true")
    assert [t["id"] for t in unread] == [answered["id"]]
    elsewhere = await inbox(stack, w, w.veileder, participant_id=str(uuid.uuid4()))
    assert elsewhere == []


async def test_an_unanswered_thread_is_reported_to_the_units_inbox_after_two_working_days(
    stack: Stack,
) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)
    thread = await open_thread(stack, w)
    calendar = stack.messaging.state.calendar
    sent = datetime.now(UTC)

    async with stack.messaging.state.sessionmaker.begin() as session:
        early = calendar.after(sent, 2) - timedelta(minutes=1)
        assert await report_overdue(session, calendar, working_days=2, now=early) == 0
        late = calendar.after(sent, 2) + timedelta(minutes=1)
        assert await report_overdue(session, calendar, working_days=2, now=late) == 1
        assert await report_overdue(session, calendar, working_days=2, now=late) == 0
        events = (
            await session.scalars(select(OutboxEvent).where(OutboxEvent.type.like("%overdue")))
        ).all()

    [event] = events
    assert event.envelope["data"]["thread_id"] == thread["id"]
    assert event.envelope["data"]["recipient_unit_id"] == str(w.nav_unit.id)
    [listed] = await inbox(stack, w, w.veileder)
    assert listed["overdue"]



async def test_concurrent_replies_to_one_thread_are_all_counted(stack: Stack) -> None:
    w = await world(stack)
    await consent_to_messages(stack, w)
    thread = await open_thread(stack, w)

    replies = await asyncio.gather(
        *(
            stack.http.post(
                f"/api/v1/threads/{thread['id']}/messages",
                json={"body": f"Melding {n}."},
                headers=staff(stack, w, w.teacher),
            )
            for n in range(12)
        )
    )

    assert [r.status_code for r in replies] == [201] * 12
    [received] = await inbox(stack, w, w.veileder)
    assert (received["message_count"], received["unread"]) == (13, 13)
