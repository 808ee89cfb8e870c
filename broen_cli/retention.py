"""`broen retention ...`: forget participants for good, under the retention rules (`run`) or
for erasure (`erase`), the same way.

Forgetting a participant, in this order:
1. the gateway appends the decision to the audit log (who, which rule or ground, the
   controller's case) and deletes the event log's events about them;
2. the messaging and consent services delete their rows about them, their data key and
   their events not yet sent;
3. the participant service deletes the participant, everything recorded about them and
   their data key, and so stops serving them at once;
4. messaging, consent and the gateway's event log are swept once more, for anything
   written or taken in meanwhile.

Each step is its own transaction and deleting is idempotent, so a run that stops half-way
is finished by the next one: the participant goes last and stays due until then. Every
data key of the participant is destroyed, so a copy of their ciphertext elsewhere (a backup)
cannot be read once the master keys it was wrapped under are gone too (README "Backups").
The audit log keeps its entries about them: they name the participant by internal id only.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broen_cli.common import JsonOption, emit, fail, settings_for
from gateway import audit
from gateway import store as gateway_store
from gateway.audit import AuditAction, AuditCaller, AuditRecord
from services.consent import store as consent_store
from services.messaging import store as messaging_store
from services.participant import store as participant_store
from services.participant.retention import Decision, RetentionPolicy, decide
from services.participant.settings import ParticipantSettings
from shared.db import make_engine, make_sessionmaker

T = TypeVar("T")

retention_app = typer.Typer(
    help="Forget participants for good: under the retention rules, or for erasure.",
    no_args_is_help=True,
)

OperatorOption = typer.Option(
    None, "--operator", help="Who runs it, as the audit log names them (default: $USER)."
)
COMPONENTS = ("gateway", "participant", "consent", "messaging")
Deleted = dict[str, dict[str, int]]


class Ground(StrEnum):
    """Grounds for erasure (GDPR art. 17(1)); the controller decides that one applies."""

    no_longer_necessary = "no_longer_necessary"
    consent_withdrawn = "consent_withdrawn"
    objection = "objection"
    unlawful = "unlawful"
    legal_obligation = "legal_obligation"

    @property
    def basis(self) -> str:
        letter = "abcde"[list(Ground).index(self)]
        return f"gdpr:17(1)({letter})"


class Databases:
    """A session factory per component, for one command."""

    def __init__(self, sessionmakers: dict[str, async_sessionmaker[AsyncSession]]) -> None:
        self.sessionmakers = sessionmakers

    async def transaction(self, component: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with self.sessionmakers[component].begin() as session:
            return await work(session)


@asynccontextmanager
async def databases() -> AsyncIterator[Databases]:
    async with AsyncExitStack() as stack:
        makers = {}
        for component in COMPONENTS:
            engine = make_engine(settings_for(component).database_url)
            stack.push_async_callback(engine.dispose)
            makers[component] = make_sessionmaker(engine)
        yield Databases(makers)


def _merge(into: Deleted, component: str, rows: dict[str, int]) -> None:
    counts = into.setdefault(component, {})
    for table, count in rows.items():
        counts[table] = counts.get(table, 0) + count


async def forget(
    db: Databases, participant_id: uuid.UUID, record: AuditRecord, deleted: Deleted
) -> None:
    """Forget one participant (module docstring), adding the rows deleted to `deleted`."""

    async def drop_events(session: AsyncSession) -> dict[str, int]:
        return await gateway_store.delete_events_about(session, str(participant_id))

    async def decide_and_drop_events(session: AsyncSession) -> dict[str, int]:
        await audit.append(session, [record])
        return await drop_events(session)

    async def services() -> None:
        for component, delete in (
            ("messaging", messaging_store.delete_participant_data),
            ("consent", consent_store.delete_participant_data),
        ):

            async def work(session: AsyncSession) -> dict[str, int]:
                return await delete(session, participant_id)  # noqa: B023 (awaited at once)

            _merge(deleted, component, await db.transaction(component, work))

    _merge(deleted, "gateway", await db.transaction("gateway", decide_and_drop_events))
    await services()
    rows = await db.transaction(
        "participant", lambda session: participant_store.delete_participant(session, participant_id)
    )
    _merge(deleted, "participant", rows)
    # Anything written about them meanwhile, and events the gateway was taking in.
    await services()
    _merge(deleted, "gateway", await db.transaction("gateway", drop_events))


def _record(
    participant_id: uuid.UUID,
    *,
    operator: str,
    purpose: str,
    action: AuditAction,
    policy_version: str,
    run_id: uuid.UUID,
) -> AuditRecord:
    return AuditRecord(
        caller=AuditCaller(kind="operator", staff_id=operator),
        participant_id=participant_id,
        purpose=purpose,
        policy_version=policy_version,
        request_id=str(run_id),
        action=action,
    )


def _operator(operator: str | None) -> str:
    try:
        name = operator or getpass.getuser()
    except (KeyError, OSError):  # a container user with no name
        fail("say who runs it: --operator NAME")
    try:
        AuditCaller(kind="operator", staff_id=name)
    except ValidationError:
        fail("--operator must be an identifier (a user name: no spaces)")
    return name


def policy_of(settings: ParticipantSettings) -> RetentionPolicy:
    return RetentionPolicy(
        default_years=settings.retention_default_years,
        years_by_programme=dict(settings.retention_years_by_programme),
    )


def policy_version(policy: RetentionPolicy) -> str:
    """Names the rules in force, so an entry shows which configuration decided."""
    rules = {"default": policy.default_years, "programmes": dict(policy.years_by_programme)}
    digest = hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()
    return f"retention-{digest[:12]}"


# ------------------------------------------------------------------------------ run


async def run_retention(
    policy: RetentionPolicy, *, operator: str, dry_run: bool, today: date
) -> dict[str, Any]:
    """Judge every participant by the rules and forget those who are due; the report."""
    run_id = uuid.uuid4()
    version = policy_version(policy)
    deleted: Deleted = {}
    async with databases() as db:
        follow_ups = await db.transaction("participant", participant_store.follow_ups)
        decisions = [decide(follow_up, policy, today) for follow_up in follow_ups]
        kept: dict[str, int] = {"open": 0, "within_retention": 0, "no_rule": 0}
        forgotten: list[dict[str, str]] = []
        for decision in sorted(decisions, key=lambda d: str(d.follow_up.participant_id)):
            if decision.outcome != "due":
                kept[decision.outcome] += 1
                continue
            if not dry_run:
                # Judged again just before: a follow-up may have begun since the list was read.
                again = await _judge_again(db, decision, policy, today)
                if again is None:  # forgotten meanwhile (an erasure, another run)
                    continue
                decision = again
                if decision.outcome != "due":
                    kept[decision.outcome] += 1
                    continue
                assert decision.rule is not None
                participant_id = decision.follow_up.participant_id
                record = _record(
                    participant_id,
                    operator=operator,
                    purpose="retention",
                    action=AuditAction(type="participant.deleted", basis=decision.rule),
                    policy_version=version,
                    run_id=run_id,
                )
                await forget(db, participant_id, record, deleted)
            forgotten.append(
                {
                    "participant_id": str(decision.follow_up.participant_id),
                    "rule": str(decision.rule),
                    "last_activity": decision.follow_up.last_activity.isoformat(),
                }
            )
        kept_entries = await db.transaction(
            "gateway",
            lambda session: gateway_store.count_audit_entries_about(
                session, [item["participant_id"] for item in forgotten]
            ),
        )
    return {
        "run_id": str(run_id),
        "dry_run": dry_run,
        "today": today.isoformat(),
        "policy": {
            "default_years": policy.default_years,
            "years_by_programme": dict(policy.years_by_programme),
            "version": version,
        },
        "considered": len(decisions),
        "deleted": 0 if dry_run else len(forgotten),
        "due": len(forgotten),
        "kept": kept,
        "participants": forgotten,
        "rows_deleted": deleted,
        "audit_entries_kept": kept_entries,
    }


async def _judge_again(
    db: Databases, decision: Decision, policy: RetentionPolicy, today: date
) -> Decision | None:
    participant_id = decision.follow_up.participant_id
    now = await db.transaction(
        "participant", lambda session: participant_store.follow_ups(session, only=participant_id)
    )
    return decide(now[0], policy, today) if now else None


@retention_app.command("run")
def run(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report who is due; delete nothing."),
    operator: str = OperatorOption,
    as_json: bool = JsonOption,
) -> None:
    """Forget every participant whose follow-up ended longer ago than the rules keep them."""
    policy = policy_of(ParticipantSettings())
    if not policy.configured:
        fail(
            "no retention rules are set, so nobody is deleted: set "
            "BROEN_PARTICIPANT_RETENTION_YEARS_BY_PROGRAMME and/or "
            "BROEN_PARTICIPANT_RETENTION_DEFAULT_YEARS (README, Retention)"
        )
    report = asyncio.run(
        run_retention(
            policy, operator=_operator(operator), dry_run=dry_run, today=datetime.now(UTC).date()
        )
    )
    kept = report["kept"]
    verb = "due (dry run, nothing deleted)" if dry_run else "deleted"
    emit(
        as_json,
        report,
        f"{report['due']} of {report['considered']} participants {verb}; kept: "
        f"{kept['open']} still followed up, {kept['within_retention']} within retention, "
        f"{kept['no_rule']} without a rule; {report['audit_entries_kept']} audit entries "
        "about them kept",
    )


# ------------------------------------------------------------------------------ erase


async def erase_participant(
    participant_id: uuid.UUID,
    *,
    ground: Ground,
    case: str,
    operator: str,
    despite_open_follow_up: bool,
) -> dict[str, Any]:
    record = _record(
        participant_id,
        operator=operator,
        purpose="erasure",
        action=AuditAction(type="participant.deleted", basis=ground.basis, reference=case),
        policy_version="erasure",
        run_id=uuid.uuid4(),
    )
    deleted: Deleted = {}
    async with databases() as db:
        found = await db.transaction(
            "participant",
            lambda session: participant_store.follow_ups(session, only=participant_id),
        )
        if not found:
            fail(f"no participant {participant_id} (never registered, or already deleted)")
        if found[0].open and not despite_open_follow_up:
            fail(
                f"participant {participant_id} is still followed up (a place planned or active, "
                "or a current assignment), where erasure seldom applies; the organisations end "
                "their follow-up first, or give --despite-open-follow-up"
            )
        await forget(db, participant_id, record, deleted)
        kept_entries = await db.transaction(
            "gateway",
            lambda session: gateway_store.count_audit_entries_about(session, [str(participant_id)]),
        )
    return {
        "participant_id": str(participant_id),
        "ground": ground.value,
        "basis": ground.basis,
        "case": case,
        "operator": operator,
        "rows_deleted": deleted,
        "audit_entries_kept": kept_entries,
    }


@retention_app.command("erase")
def erase(
    participant_id: uuid.UUID = typer.Argument(..., help="Broen's id of the participant."),
    ground: Ground = typer.Option(..., "--ground", help="Why erasure applies (GDPR 17(1))."),
    case: str = typer.Option(..., "--case", help="The controller's case reference."),
    despite_open_follow_up: bool = typer.Option(
        False, "--despite-open-follow-up", help="Erase even though someone follows them up."
    ),
    operator: str = OperatorOption,
    as_json: bool = JsonOption,
) -> None:
    """Forget one participant who has the right to erasure, recorded in the audit log."""
    try:
        AuditAction(type="participant.deleted", basis=ground.basis, reference=case)
    except ValidationError:
        fail("--case must be a case reference (no spaces, no 11-digit number)")
    report = asyncio.run(
        erase_participant(
            participant_id,
            ground=ground,
            case=case,
            operator=_operator(operator),
            despite_open_follow_up=despite_open_follow_up,
        )
    )
    emit(
        as_json,
        report,
        f"participant {participant_id} erased ({ground.basis}, case {case}); "
        f"{report['audit_entries_kept']} audit entries about them kept",
    )
