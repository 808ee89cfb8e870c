"""A service's own data key per participant, for the free text it keeps about them
(consent justifications, message bodies): wrapped by the service's master key, made on
first use, and destroyed to shred that text (crypto-shredding). The re-wrapping of a
component's stored keys under its current master key after a rotation (`rewrap`), and the
deletion of everything a service holds about a participant (`delete_in_order`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Delete, LargeBinary, String, Table, Uuid, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from shared.crypto import (
    DecryptionFailed,
    Keyring,
    WrappedKey,
    associated_data,
    open_sealed,
    seal,
)
from shared.db import sqlite_writing

REWRAP_BATCH = 500


class ParticipantKeyMixin:
    """Mix into the service's base: `class ParticipantKey(ParticipantKeyMixin, Base)`."""

    @declared_attr.directive
    def __tablename__(cls) -> str:
        return "participant_keys"

    participant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    kid: Mapped[str] = mapped_column(String(50))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)


async def participant_data_key(
    session: AsyncSession,
    keyring: Keyring,
    model: type[ParticipantKeyMixin],
    participant_id: uuid.UUID,
) -> bytes:
    """The participant's data key, made and stored in this transaction if there is none
    (a key made by a concurrent request first is the one used)."""
    owner = str(participant_id)
    held = await session.get(model, participant_id)
    if held is None:
        key, wrapped = keyring.new_data_key(owner)
        try:
            async with session.begin_nested():
                session.add(
                    model(  # type: ignore[call-arg]
                        participant_id=participant_id, kid=wrapped.kid, wrapped_key=wrapped.wrapped
                    )
                )
            return key
        except IntegrityError:
            held = await session.get(model, participant_id, populate_existing=True)
            assert held is not None
    return keyring.unwrap(WrappedKey(held.kid, held.wrapped_key), owner)


def unwrap_keys(keyring: Keyring, held: Iterable[ParticipantKeyMixin]) -> dict[uuid.UUID, bytes]:
    """The data keys of stored rows, by participant (a shredded participant has none)."""
    return {
        row.participant_id: keyring.unwrap(
            WrappedKey(row.kid, row.wrapped_key), str(row.participant_id)
        )
        for row in held
    }


def seal_text(key: bytes, table: str, column: str, row_id: uuid.UUID, text: str) -> bytes:
    """Free text sealed under the data key, bound to its table, column and row."""
    return seal(key, text.encode(), associated_data(table, column, str(row_id)))


def open_text(key: bytes, table: str, column: str, row_id: uuid.UUID, sealed: bytes) -> str:
    return open_sealed(key, sealed, associated_data(table, column, str(row_id))).decode()


# ------------------------------------------------------------------------------ re-wrapping


@dataclass(frozen=True)
class WrappedKeyColumns:
    """Where a component stores keys wrapped by its master key: the table, its id column,
    the master key id and wrapped key columns, and the owner each wrapping is bound to."""

    table: Table
    id: str
    kid: str
    wrapped: str
    owner: Callable[[Any], str] = str

    @classmethod
    def of(cls, model: type[Any]) -> WrappedKeyColumns:
        """A service's participant_keys table (ParticipantKeyMixin's columns)."""
        return cls(model.__table__, "participant_id", "kid", "wrapped_key")


@dataclass
class Rewrapped:
    """What a re-wrap did: keys re-wrapped, keys that would not unwrap (their master key is
    gone, or they were tampered with), and what is wrapped under which key afterwards."""

    kid: str
    rewrapped: int = 0
    failed: int = 0
    by_kid: dict[str, int] = field(default_factory=dict)


async def count_by_kid(session: AsyncSession, where: WrappedKeyColumns) -> dict[str, int]:
    """How many stored keys each master key wraps."""
    kid = where.table.c[where.kid]
    rows = await session.execute(select(kid, func.count()).group_by(kid))
    return {str(row[0]): int(row[1]) for row in rows}


async def rewrap(
    sessionmaker: async_sessionmaker[AsyncSession],
    keyring: Keyring,
    tables: Iterable[WrappedKeyColumns],
    *,
    batch_size: int = REWRAP_BATCH,
) -> Rewrapped:
    """Re-wrap every stored key not wrapped under the current master key, in batches of
    `batch_size` rows, each batch its own transaction. Safe while the component serves: a
    row is changed only if it still holds what was read (a key shredded or re-wrapped
    meanwhile is left as it is), and to run again: what is under the current key already
    is not read."""
    kid = keyring.current
    result = Rewrapped(kid=kid)
    for where in tables:
        table = where.table
        row_id, row_kid, row_wrapped = (
            table.c[where.id],
            table.c[where.kid],
            table.c[where.wrapped],
        )
        after: Any = None
        while True:
            with sqlite_writing(True):
                async with sessionmaker.begin() as session:
                    query = select(row_id, row_kid, row_wrapped).where(row_kid != kid)
                    if after is not None:
                        query = query.where(row_id > after)
                    rows = (await session.execute(query.order_by(row_id).limit(batch_size))).all()
                    for held_id, held_kid, held_wrapped in rows:
                        owner = where.owner(held_id)
                        try:
                            data_key = keyring.unwrap(WrappedKey(held_kid, held_wrapped), owner)
                        except DecryptionFailed:
                            result.failed += 1
                            continue
                        new = keyring.wrap(data_key, owner)
                        changed = await session.execute(
                            update(table)
                            .where(
                                row_id == held_id,
                                row_kid == held_kid,
                                row_wrapped == held_wrapped,
                            )
                            .values({where.kid: new.kid, where.wrapped: new.wrapped})
                        )
                        result.rewrapped += changed.rowcount  # type: ignore[attr-defined]
            if len(rows) < batch_size:
                break
            after = rows[-1][0]
        async with sessionmaker() as session:
            for held_kid, count in (await count_by_kid(session, where)).items():
                result.by_kid[held_kid] = result.by_kid.get(held_kid, 0) + count
    return result


# ------------------------------------------------------------------------------ forgetting


async def delete_in_order(session: AsyncSession, *statements: Delete) -> dict[str, int]:
    """Run the deletes of a participant's rows in order (children first, the data key
    among them); rows deleted per table. Flushes, never commits."""
    deleted: dict[str, int] = {}
    for statement in statements:
        result = await session.execute(statement)
        table = cast(Table, statement.table).name
        deleted[table] = deleted.get(table, 0) + int(cast(CursorResult[Any], result).rowcount)
    return deleted
