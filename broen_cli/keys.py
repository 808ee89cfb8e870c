"""`broen admin keys ...`: create the key directory, and rotate its keys without downtime.

Signing keys (token-signing, audit-signing, receipt-signing) rotate by appending a key that
signs from a moment a little ahead (`--activate-in`), so every running process has read it
before anything signed with it reaches them; the old key stays to verify. Token keys are
dropped (`prune`) once every token they signed has expired; audit and receipt keys never
are, since heads and receipts verify for ever. A master key rotates the same way; `rewrap`
then re-wraps the component's stored keys under it, and `drop-master` removes an old master
key once nothing is wrapped under it. No command prints key material.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import typer
from sqlalchemy import Table
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broen_cli.common import JsonOption, emit, fail, settings_for
from gateway.tokens import PRUNE_AFTER
from shared.crypto import Keyring
from shared.data_keys import REWRAP_BATCH, WrappedKeyColumns, count_by_kid, rewrap
from shared.db import make_engine, make_sessionmaker
from shared.keys import (
    DATA_KEY_COMPONENTS,
    ROTATION_DELAY_SECONDS,
    SIGNING_KEY_SETS,
    data_keys_file,
    drop_master_key,
    init_keys_dir,
    parse_stamp,
    prune_retired_keys,
    read_json,
    rotate_master_key,
    rotate_signing_keys,
    stamp,
)
from shared.keys import check_master_key_drop as check_drop
from shared.settings import ConfigurationError
from web.keys import init_web_keys

T = TypeVar("T")

keys_app = typer.Typer(help="Key material: create, rotate, re-wrap.", no_args_is_help=True)

DirOption = typer.Option(None, "--dir", help="Defaults to BROEN_KEYS_DIR or var/keys.")
ComponentOption = typer.Option(None, "--component", help=", ".join(DATA_KEY_COMPONENTS))


def _keys_dir(directory: Path | None) -> Path:
    return directory or Path(os.environ.get("BROEN_KEYS_DIR", "var/keys"))


def _component(component: str | None) -> str:
    if component not in DATA_KEY_COMPONENTS:
        fail(f"--component takes one of {', '.join(DATA_KEY_COMPONENTS)}")
    return component


def wrapped_keys(component: str) -> list[WrappedKeyColumns]:
    """Where the component stores keys wrapped by its master key."""
    if component == "gateway":
        from gateway.events.webhooks import secret_owner
        from gateway.models import Subscription

        table = cast(Table, Subscription.__table__)
        return [WrappedKeyColumns(table, "id", "secret_kid", "secret_wrapped", secret_owner)]
    if component == "participant":
        from services.participant.models import ParticipantKey as Participants
    elif component == "consent":
        from services.consent.models import ParticipantKey as Participants  # type: ignore[assignment]
    else:
        from services.messaging.models import ParticipantKey as Participants  # type: ignore[assignment]
    return [WrappedKeyColumns.of(Participants)]


def _in_database(
    component: str, work: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]
) -> T:
    async def run() -> T:
        engine = make_engine(settings_for(component).database_url)
        try:
            return await work(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except (SQLAlchemyError, OSError) as error:
        # The driver's message may quote connection details; the type is enough to act on.
        fail(f"could not use the {component} database ({type(error).__name__}); is it migrated?")


@keys_app.command("init")
def keys_init(directory: Path = DirOption, as_json: bool = JsonOption) -> None:
    """Create every missing key file (never overwrites), the web app's two included."""
    target = _keys_dir(directory)
    written = init_keys_dir(target) + init_web_keys(target)
    emit(
        as_json,
        {"dir": str(target), "written": written},
        f"{target}: wrote {len(written)} key file(s)",
    )


@keys_app.command("rotate")
def rotate(
    kind: str = typer.Argument(..., help="token-signing, audit-signing, receipt-signing or master"),
    component: str = ComponentOption,
    directory: Path = DirOption,
    activate_in: int = typer.Option(
        ROTATION_DELAY_SECONDS,
        "--activate-in",
        min=0,
        help="Seconds until the new key signs or wraps: longer than the key directory takes "
        "to reach every running replica.",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Add a new key that signs (or wraps) from --activate-in on; the old one stays to verify."""
    keys_dir = _keys_dir(directory)
    now = datetime.now(UTC)
    delay = timedelta(seconds=activate_in)
    try:
        if kind == "master":
            done = rotate_master_key(keys_dir, _component(component), now=now, delay=delay)
            text = (
                f"{done['file']}: master key {done['kid']} wraps from {done['wraps_from']}; "
                f"{done['previous_kid']} still unwraps. After that run `broen admin keys "
                f"rewrap --component {component}`, then `broen admin keys drop-master "
                f"{done['previous_kid']} --component {component}`"
            )
        elif kind in SIGNING_KEY_SETS:
            if component is not None:
                fail("--component is for `rotate master` only")
            done = rotate_signing_keys(keys_dir, kind, now=now, delay=delay)
            text = (
                f"{done['file']}: key {done['kid']} signs from {done['signs_from']}; "
                f"{done['retired_kid']} retires at {done['retired_after']} and still verifies"
            )
            if kind == "token-signing":
                done["prunable_from"] = stamp(parse_stamp(done["retired_after"]) + PRUNE_AFTER)
                text += (
                    f"; drop it with `broen admin keys prune token-signing` from "
                    f"{done['prunable_from']}"
                )
        else:
            fail(f"rotate takes one of {', '.join([*SIGNING_KEY_SETS, 'master'])}")
    except ConfigurationError as refusal:
        fail(str(refusal))
    emit(as_json, done, text)


@keys_app.command("prune")
def prune(
    kind: str = typer.Argument(..., help="token-signing (the only keys that expire)"),
    directory: Path = DirOption,
    as_json: bool = JsonOption,
) -> None:
    """Drop token-signing keys retired so long ago that every token they signed has expired."""
    if kind != "token-signing":
        fail("only token-signing keys are pruned: audit heads and receipts verify for ever")
    try:
        dropped = prune_retired_keys(
            _keys_dir(directory), kind, now=datetime.now(UTC), keep_for=PRUNE_AFTER
        )
    except ConfigurationError as refusal:
        fail(str(refusal))
    emit(
        as_json,
        {"dropped": dropped},
        f"dropped {', '.join(dropped)}" if dropped else "no retired token key has expired yet",
    )


def _keyring(keys_dir: Path, component: str) -> Keyring:
    try:
        return Keyring.load(keys_dir, component)
    except (ConfigurationError, ValueError, KeyError) as error:
        fail(f"{data_keys_file(component)}: {error}")


@keys_app.command("rewrap")
def rewrap_keys(
    component: str = ComponentOption,
    directory: Path = DirOption,
    batch_size: int = typer.Option(REWRAP_BATCH, "--batch-size", min=1, max=10_000),
    as_json: bool = JsonOption,
) -> None:
    """Re-wrap the component's stored keys under its current master key (batches, re-runnable)."""
    component = _component(component)
    keys_dir = directory or settings_for(component).keys_dir
    keyring = _keyring(keys_dir, component)
    starts = keyring.master_keys.current_from
    if starts is not None and starts > datetime.now(UTC):
        fail(
            f"master key {keyring.master_keys.current} wraps only from {stamp(starts)}; "
            "re-wrap after that"
        )
    done = _in_database(
        component,
        lambda sessions: rewrap(sessions, keyring, wrapped_keys(component), batch_size=batch_size),
    )
    document: dict[str, Any] = {
        "component": component,
        "kid": done.kid,
        "rewrapped": done.rewrapped,
        "failed": done.failed,
        "by_kid": done.by_kid,
    }
    wrapped = ", ".join(f"{kid}: {count}" for kid, count in sorted(done.by_kid.items()))
    emit(
        as_json,
        document,
        f"{component}: {done.rewrapped} key(s) re-wrapped under {done.kid}, {done.failed} "
        f"would not unwrap; stored keys by master key: {wrapped or 'none'}",
    )
    if done.failed:
        raise typer.Exit(1)


@keys_app.command("drop-master")
def drop_master(
    kid: str = typer.Argument(..., help="The master key id to remove."),
    component: str = ComponentOption,
    directory: Path = DirOption,
    as_json: bool = JsonOption,
) -> None:
    """Remove an old master key; refused while anything stored is still wrapped under it."""
    component = _component(component)
    keys_dir = directory or settings_for(component).keys_dir
    now = datetime.now(UTC)
    try:
        check_drop(read_json(keys_dir, data_keys_file(component)), kid, now=now)
    except ConfigurationError as refusal:
        fail(str(refusal))

    async def still_wrapped(sessions: async_sessionmaker[AsyncSession]) -> int:
        async with sessions() as session:
            counts = [await count_by_kid(session, where) for where in wrapped_keys(component)]
        return sum(found.get(kid, 0) for found in counts)

    remaining = _in_database(component, still_wrapped)
    if remaining:
        fail(
            f"{remaining} stored key(s) of {component} are still wrapped under {kid}; run "
            f"`broen admin keys rewrap --component {component}` first"
        )
    try:
        drop_master_key(keys_dir, component, kid, now=now)
    except ConfigurationError as refusal:
        fail(str(refusal))
    emit(
        as_json,
        {"component": component, "dropped": kid},
        f"{data_keys_file(component)}: master key {kid} dropped",
    )
