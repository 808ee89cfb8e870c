"""A service's own data key per participant, for the free text it keeps about them
(consent justifications, message bodies): wrapped by the service's master key, made on
first use, and destroyed to shred that text (crypto-shredding)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import LargeBinary, String, Uuid
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from shared.crypto import Keyring, WrappedKey, associated_data, open_sealed, seal


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
