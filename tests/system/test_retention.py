"""Retention and erasure (`broen retention run` / `erase`): a participant whose follow-up
ended longer ago than the rules keep them is deleted in every service, data keys included,
while the audit log keeps its pseudonymous entries; erasure takes the same path; and a
backup's copy of their ciphertext is unreadable once the master key is rotated away."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from typer.testing import CliRunner, Result

from broen_cli.keys import keys_app
from broen_cli.retention import retention_app
from gateway import audit
from gateway.audit import AuditKeys
from gateway.models import AuditEntry, EventRecord
from services.consent.models import Consent, ConsentRequest
from services.consent.models import ParticipantKey as ConsentKey
from services.messaging.models import Message, Thread
from services.messaging.models import ParticipantKey as MessagingKey
from services.participant.models import (
    Assignment,
    Attribute,
    Event,
    Participant,
    ParticipantKey,
    ProgrammeParticipation,
    Registration,
)
from services.participant.retention import RetentionPolicy, years_after
from shared.crypto import DecryptionFailed, Keyring, WrappedKey, associated_data, open_sealed
from shared.keys import init_keys_dir, rotate_master_key
from tests.system import conftest as system
from tests.system.conftest import Organisation, Stack
from tests.system.test_messaging import consent_to_messages, open_thread
from tests.system.world import NAV, World, world

pytestmark = pytest.mark.anyio

stack = system.stack

OLA, PER, LISE = "02030653478", "15076500565", "01010750160"
RULES = {"BROEN_PARTICIPANT_RETENTION_YEARS_BY_PROGRAMME": json.dumps({"vgo": 5})}


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """A key directory of the test's own: a test here rotates a master key."""
    directory = tmp_path / "keys"
    init_keys_dir(directory)
    return directory


def environment(stack: Stack, **extra: str) -> dict[str, str]:
    """What an operator's shell holds: every component's database, the key directory."""
    env = {
        f"BROEN_{component.upper()}_DATABASE_URL": app.state.settings.database_url
        for component, app in (
            ("gateway", stack.gateway),
            ("participant", stack.participant),
            ("consent", stack.consent),
            ("messaging", stack.messaging),
        )
    }
    env["BROEN_KEYS_DIR"] = str(stack.gateway_settings.keys_dir)
    return {**env, **extra}


async def broen(app: Any, stack: Stack, *arguments: str, **env: str) -> Result:
    """The CLI as an operator runs it, from a test in an event loop."""
    return await asyncio.to_thread(
        CliRunner().invoke, app, [*arguments, "--json"], env=environment(stack, **env)
    )


async def register(stack: Stack, organisation: Organisation, national_id: str) -> str:
    created = await stack.http.post(
        "/api/v1/participants",
        json={"national_id": national_id, "name": "Deltaker Demo", "source_system": "Arena"},
        headers=await stack.as_org(organisation),
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def place(stack: Stack, organisation: Organisation, participant: str, programme: str) -> None:
    placed = await stack.http.post(
        f"/api/v1/participants/{participant}/programmes",
        json={"programme": programme, "starts_on": "2015-08-17"},
        headers=await stack.as_org(organisation),
    )
    assert placed.status_code == 201, placed.text


async def end_follow_up(stack: Stack, participant: str, *, years_ago: int) -> None:
    """Every place completed and every assignment ended `years_ago`, and nothing recorded
    about them since (as if the follow-up really ended then)."""
    then = datetime.now(UTC) - timedelta(days=365 * years_ago + 2)
    pid = uuid.UUID(participant)
    async with stack.participant.state.sessionmaker.begin() as session:
        for model, values in (
            (ProgrammeParticipation, {"status": "completed", "ends_on": then.date()}),
            (ProgrammeParticipation, {"recorded_at": then}),
            (Assignment, {"valid_to": then, "recorded_at": then}),
            (Event, {"recorded_at": then}),
            (Registration, {"registered_at": then}),
        ):
            await session.execute(
                update(model).where(model.participant_id == pid).values(**values)  # type: ignore[attr-defined]
            )
        await session.execute(
            update(Participant).where(Participant.id == pid).values(updated_at=then)
        )


async def rows_about(stack: Stack, participant: str, *, event_log: bool = True) -> dict[str, int]:
    """Rows about the participant left anywhere but the audit log (and the event log, which
    the gateway fills in the background, unless `event_log`)."""
    pid = uuid.UUID(participant)
    counted: dict[str, int] = {}
    for component, app, models in (
        ("participant", stack.participant, (Participant, ParticipantKey, Attribute, Assignment)),
        ("consent", stack.consent, (Consent, ConsentRequest, ConsentKey)),
        ("messaging", stack.messaging, (Thread, Message, MessagingKey)),
    ):
        async with app.state.sessionmaker() as session:
            for model in models:
                column = model.id if model is Participant else model.participant_id  # type: ignore[attr-defined]
                found = await session.scalar(select(func.count()).where(column == pid))
                counted[f"{component}:{model.__tablename__}"] = int(found or 0)
            outbox = await session.scalar(
                text("SELECT count(*) FROM outbox WHERE subject = :s"), {"s": participant}
            )
            counted[f"{component}:outbox"] = int(outbox or 0)
    if not event_log:
        return counted
    async with stack.gateway.state.sessionmaker() as session:
        events = await session.scalars(select(EventRecord.envelope))
        counted["gateway:event_log"] = sum(1 for e in events if e.get("subject") == participant)
    return counted


async def audit_entries_about(stack: Stack, participant: str) -> list[dict[str, Any]]:
    async with stack.gateway.state.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEntry.content)
            .where(AuditEntry.participant_id == participant)
            .order_by(AuditEntry.seq)
        )
        return [json.loads(content) for content in rows]


async def chain_verifies(stack: Stack) -> bool:
    async with stack.gateway.state.engine.connect() as connection:
        report = await audit.verify(connection, AuditKeys.load(stack.gateway_settings.keys_dir))
    return report.ok


async def kari_followed_by_two_agencies(stack: Stack) -> World:
    """Kari: NAV and her school, a place at the school, a consent and a message thread."""
    w = await world(stack)
    await place(stack, w.skole, w.participant, "vgo")
    await consent_to_messages(stack, w)
    await open_thread(stack, w)
    read = await stack.http.get(w.url, headers=await stack.as_org(w.skole))
    assert read.status_code == 200  # an audited read: the audit log has entries about her
    return w


# --- retention ------------------------------------------------------------------------------


async def test_retention_deletes_whoever_ended_follow_up_longer_ago_than_their_programme_keeps(
    stack: Stack,
) -> None:
    w = await kari_followed_by_two_agencies(stack)
    await end_follow_up(stack, w.participant, years_ago=6)
    ola = await register(stack, w.nav, OLA)  # vgo, ended two years ago: kept
    await place(stack, w.nav, ola, "vgo")
    await end_follow_up(stack, ola, years_ago=2)
    per = await register(stack, w.nav, PER)  # a place still active: kept
    await place(stack, w.nav, per, "vgo")
    lise = await register(stack, w.nav, LISE)  # a course with no rule of its own: kept
    await place(stack, w.nav, lise, "kurs")
    await end_follow_up(stack, lise, years_ago=20)
    assert (await rows_about(stack, w.participant))["consent:consents"] == 1
    entries_before = await audit_entries_about(stack, w.participant)

    ran = await broen(retention_app, stack, "run", "--operator", "drift", **RULES)

    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.stdout)
    assert report["considered"] == 4 and report["deleted"] == 1
    assert [p["participant_id"] for p in report["participants"]] == [w.participant]
    assert report["participants"][0]["rule"] == "retention:vgo:5y"
    assert report["kept"] == {"open": 1, "within_retention": 1, "no_rule": 1}
    for component in ("participant", "consent", "messaging"):
        assert report["rows_deleted"][component]["participant_keys"] == 1
    assert report["rows_deleted"]["messaging"]["messages"] == 1
    assert w.national_id not in ran.output and "Kari" not in ran.output

    assert set((await rows_about(stack, w.participant)).values()) == {0}
    nav = await stack.as_org(w.nav)
    assert (await stack.http.get(w.url, headers=nav)).status_code == 404
    looked_up = await stack.http.post(
        "/api/v1/participants/lookup", json={"national_id": w.national_id}, headers=nav
    )
    assert looked_up.status_code == 404
    for kept in (ola, per, lise):
        assert (await rows_about(stack, kept))["participant:participant_keys"] == 1
    read = await stack.http.get(f"/api/v1/participants/{per}", headers=nav)
    assert read.status_code == 200 and read.json()["name"] == "Deltaker Demo"

    # The audit log keeps what it held about her, and records the deletion, by internal id.
    after = await audit_entries_about(stack, w.participant)
    assert after[: len(entries_before)] == entries_before
    assert report["audit_entries_kept"] == len(after) == len(entries_before) + 1
    assert after[-1]["purpose"] == "retention"
    assert after[-1]["caller"]["kind"] == "operator" and after[-1]["caller"]["staff_id"] == "drift"
    assert after[-1]["action"] == {
        "type": "participant.deleted",
        "basis": "retention:vgo:5y",
        "reference": None,
    }
    assert await chain_verifies(stack)

    again = await broen(retention_app, stack, "run", **RULES)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["deleted"] == 0


async def test_a_dry_run_reports_who_is_due_and_deletes_nothing(stack: Stack) -> None:
    w = await kari_followed_by_two_agencies(stack)
    await end_follow_up(stack, w.participant, years_ago=6)
    before = await rows_about(stack, w.participant, event_log=False)

    ran = await broen(retention_app, stack, "run", "--dry-run", **RULES)

    assert ran.exit_code == 0, ran.output
    report = json.loads(ran.stdout)
    assert (report["due"], report["deleted"]) == (1, 0)
    assert await rows_about(stack, w.participant, event_log=False) == before
    assert "action" not in (await audit_entries_about(stack, w.participant))[-1]


async def test_without_retention_rules_nobody_is_deleted(stack: Stack) -> None:
    w = await kari_followed_by_two_agencies(stack)
    await end_follow_up(stack, w.participant, years_ago=30)
    before = await rows_about(stack, w.participant, event_log=False)

    ran = await broen(retention_app, stack, "run")

    assert ran.exit_code == 1
    assert "no retention rules are set" in ran.output
    assert await rows_about(stack, w.participant, event_log=False) == before


async def test_a_follow_up_begun_again_keeps_the_participant(stack: Stack) -> None:
    w = await kari_followed_by_two_agencies(stack)
    await end_follow_up(stack, w.participant, years_ago=6)
    assigned = await stack.http.post(
        f"{w.url}/assignments",
        json={"role": "veileder", "staff_id": str(w.veileder.id)},
        headers=await stack.as_org(w.nav),
    )
    assert assigned.status_code == 201, assigned.text

    ran = await broen(retention_app, stack, "run", **RULES)

    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["kept"]["open"] == 1
    assert (await rows_about(stack, w.participant))["participant:participants"] == 1


# --- erasure --------------------------------------------------------------------------------


async def test_erasure_takes_the_same_path_and_is_recorded_with_its_ground_and_case(
    stack: Stack,
) -> None:
    w = await kari_followed_by_two_agencies(stack)
    ola = await register(stack, w.nav, OLA)
    await place(stack, w.nav, ola, "vgo")
    arguments = ("erase", w.participant, "--ground", "consent_withdrawn", "--case", "2026/417")

    # Still followed up by NAV and the school: refused unless the controller says otherwise.
    refused = await broen(retention_app, stack, *arguments)
    assert refused.exit_code == 1 and "still followed up" in refused.output
    assert (await rows_about(stack, w.participant))["participant:participants"] == 1

    erased = await broen(retention_app, stack, *arguments, "--despite-open-follow-up")

    assert erased.exit_code == 0, erased.output
    report = json.loads(erased.stdout)
    assert report["basis"] == "gdpr:17(1)(b)"
    assert set((await rows_about(stack, w.participant)).values()) == {0}
    [*_, recorded] = await audit_entries_about(stack, w.participant)
    assert recorded["purpose"] == "erasure"
    assert recorded["action"] == {
        "type": "participant.deleted",
        "basis": "gdpr:17(1)(b)",
        "reference": "2026/417",
    }
    assert await chain_verifies(stack)
    nav = await stack.as_org(w.nav)
    assert (await stack.http.get(f"/api/v1/participants/{ola}", headers=nav)).status_code == 200

    gone = await broen(retention_app, stack, *arguments)
    assert gone.exit_code == 1 and "already deleted" in gone.output


@pytest.mark.parametrize("case", ["a case with spaces", "15080551212"])
async def test_an_erasure_case_reference_that_could_hold_personal_data_is_refused(
    stack: Stack, case: str
) -> None:
    w = await kari_followed_by_two_agencies(stack)

    refused = await broen(
        retention_app, stack, "erase", w.participant, "--ground", "objection", "--case", case
    )

    assert refused.exit_code == 1 and "--case" in refused.output
    assert case not in refused.output
    assert (await rows_about(stack, w.participant))["participant:participants"] == 1


# --- backups --------------------------------------------------------------------------------


async def test_a_backup_copy_of_erased_ciphertext_is_unreadable_once_the_old_master_key_is_gone(
    stack: Stack,
) -> None:
    """README "Backups": the master key is rotated, every live key re-wrapped under the new
    one, and the old one destroyed; a backup taken before holds only keys wrapped under it."""
    w = await kari_followed_by_two_agencies(stack)
    ola = await register(stack, w.nav, OLA)
    await place(stack, w.nav, ola, "vgo")
    backup = await participant_rows(stack, w.participant)  # the backup of Kari's rows
    keys_dir = stack.gateway_settings.keys_dir
    assert read_from_backup(Keyring.load(keys_dir, "participant"), backup) == "Kari Nordmann"

    erased = await broen(
        retention_app,
        stack,
        *("erase", w.participant, "--ground", "no_longer_necessary", "--case", "2026/9"),
        "--despite-open-follow-up",
    )
    assert erased.exit_code == 0, erased.output
    # Erased from the database, but the backup still holds a key the master key unwraps.
    assert read_from_backup(Keyring.load(keys_dir, "participant"), backup) == "Kari Nordmann"

    rotated = rotate_master_key(
        keys_dir, "participant", now=datetime.now(UTC) - timedelta(minutes=2), delay=timedelta(0)
    )
    for step in (
        ("rewrap", "--component", "participant"),
        ("drop-master", rotated["previous_kid"], "--component", "participant"),
    ):
        done = await broen(keys_app, stack, *step)
        assert done.exit_code == 0, done.output

    with pytest.raises(DecryptionFailed):
        read_from_backup(Keyring.load(keys_dir, "participant"), backup)
    nav = await stack.as_org(w.nav)
    read = await stack.http.get(f"/api/v1/participants/{ola}", headers=nav)
    assert read.status_code == 200 and read.json()["name"] == "Deltaker Demo"


async def participant_rows(stack: Stack, participant: str) -> dict[str, Any]:
    pid = uuid.UUID(participant)
    async with stack.participant.state.sessionmaker() as session:
        key = await session.get(ParticipantKey, pid)
        name = await session.scalar(
            select(Attribute).where(
                Attribute.participant_id == pid,
                Attribute.field == "name",
                Attribute.owner_orgnr == NAV,
            )
        )
    assert key is not None and name is not None
    return {
        "id": participant,
        "kid": key.kid,
        "wrapped": key.wrapped_key,
        "name": name.value_sealed,
    }


def read_from_backup(keyring: Keyring, backup: dict[str, Any]) -> str:
    """What restoring the backup under these master keys would read of Kari's name."""
    key = keyring.unwrap(WrappedKey(backup["kid"], backup["wrapped"]), backup["id"])
    aad = associated_data("attributes", "name", f"{backup['id']}/{NAV}")
    return str(json.loads(open_sealed(key, backup["name"], aad)))


def test_the_longest_rule_among_the_programmes_decides_and_one_without_a_rule_keeps() -> None:
    rules = RetentionPolicy(default_years=None, years_by_programme={"vgo": 5, "intro": 10})
    assert rules.rule_for(frozenset({"vgo", "intro"})) == ("intro", 10)
    assert rules.rule_for(frozenset({"vgo", "kurs"})) is None
    assert rules.rule_for(frozenset()) is None
    with_default = RetentionPolicy(default_years=3, years_by_programme={"vgo": 5})
    assert with_default.rule_for(frozenset({"kurs"})) == ("default", 3)
    assert with_default.rule_for(frozenset()) == ("default", 3)
    assert with_default.rule_for(frozenset({"vgo", "kurs"})) == ("vgo", 5)


def test_years_after_keeps_the_day_or_takes_28_february() -> None:
    assert years_after(date(2020, 2, 29), 5) == date(2025, 2, 28)
    assert years_after(date(2020, 3, 1), 5) == date(2025, 3, 1)
