"""Field encryption: values bound to their place, master keys that rotate, data keys that shred."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from shared.crypto import DecryptionFailed, Keyring, associated_data, open_sealed, seal


def keyring(**master_keys: bytes) -> Keyring:
    keys = master_keys or {"k1": os.urandom(32)}
    return Keyring(keys, current=list(keys)[-1], blind_index_key=os.urandom(32))


def test_a_value_moved_to_another_row_does_not_decrypt() -> None:
    data_key, _ = keyring().new_data_key("p1")
    sealed = seal(data_key, b"secret", associated_data("participants", "national_id", "row-1"))

    assert (
        open_sealed(data_key, sealed, associated_data("participants", "national_id", "row-1"))
        == b"secret"
    )
    with pytest.raises(DecryptionFailed):
        open_sealed(data_key, sealed, associated_data("participants", "national_id", "row-2"))
    with pytest.raises(DecryptionFailed):
        open_sealed(data_key, sealed, associated_data("participants", "name", "row-1"))


def test_data_keys_wrapped_by_an_old_master_key_stay_readable_after_rotation() -> None:
    old = os.urandom(32)
    before = keyring(k1=old)
    data_key, wrapped = before.new_data_key("p1")

    after = keyring(k1=old, k2=os.urandom(32))

    assert after.current == "k2"
    assert after.unwrap(wrapped, "p1") == data_key
    assert after.wrap(data_key, "p1").kid == "k2"


def test_a_rotated_in_master_key_wraps_only_from_its_moment_on() -> None:
    keys = {"k1": os.urandom(32), "k2": os.urandom(32)}
    now = datetime.now(UTC)

    def rotated(current_from: datetime) -> Keyring:
        return Keyring(keys, "k2", os.urandom(32), previous="k1", current_from=current_from)

    waiting, begun = rotated(now + timedelta(minutes=2)), rotated(now - timedelta(seconds=1))
    data_key, wrapped = waiting.new_data_key("p1")

    assert waiting.current == wrapped.kid == "k1"
    assert begun.current == begun.wrap(data_key, "p1").kid == "k2"
    assert begun.unwrap(wrapped, "p1") == data_key


def test_a_data_key_unwraps_only_for_its_own_participant() -> None:
    ring = keyring()
    _, wrapped = ring.new_data_key("p1")

    with pytest.raises(DecryptionFailed):
        ring.unwrap(wrapped, "p2")


def test_without_the_master_key_nothing_unwraps() -> None:
    _, wrapped = keyring(k1=os.urandom(32)).new_data_key("p1")

    with pytest.raises(DecryptionFailed):
        keyring(k9=os.urandom(32)).unwrap(wrapped, "p1")


def test_the_blind_index_is_stable_keyed_and_separates_kinds() -> None:
    ring = keyring()
    other = keyring()

    assert ring.blind_index("national_id", "15080551212") == ring.blind_index(
        "national_id", "15080551212"
    )
    assert ring.blind_index("national_id", "15080551212") != other.blind_index(
        "national_id", "15080551212"
    )
    assert ring.blind_index("national_id", "x") != ring.blind_index("phone", "x")
