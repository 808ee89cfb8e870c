"""Field encryption and blind indexing.

Envelope encryption: every participant has a data key (DEK); the DEK is stored
wrapped by a master key that has a key id, so master keys rotate by re-wrapping
DEKs, and deleting a participant's DEK makes all their ciphertext unreadable
(crypto-shredding). Each ciphertext is bound with associated data to its
table, column and row, so a value copied to another row or column fails to decrypt.

Master keys rotate without downtime (`broen admin keys rotate master`): the new key is
added to the component's data-keys file as "current" with "current_from", a moment a little
ahead; until then "previous" wraps, so every replica knows the new key before any data key
wrapped with it reaches them. Every master key in the file unwraps. `broen admin keys
rewrap` then re-wraps the stored data keys (shared/data_keys.py), and the old master key
can be dropped once nothing is wrapped under it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.keys import WatchedKeyFile, data_keys_file, parse_stamp

NONCE_BYTES = 12
UNWRAPPED_KEYS_HELD = 10_000


class DecryptionFailed(Exception):
    """Ciphertext did not verify (wrong key, wrong row binding, or tampered)."""


def _b64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value.encode())


@dataclass(frozen=True)
class WrappedKey:
    kid: str
    wrapped: bytes


def associated_data(table: str, column: str, row_id: str) -> bytes:
    return f"{table}/{column}/{row_id}".encode()


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise DecryptionFailed("ciphertext did not verify") from None


@dataclass(frozen=True)
class MasterKeys:
    """A component's data-keys file: its master keys by key id, which one wraps (and from
    when), and the blind-index key."""

    keys: dict[str, bytes]
    current: str
    blind_index_key: bytes
    previous: str | None = None
    current_from: datetime | None = None

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError("the current master key id is not among the master keys")
        if self.previous is not None and self.previous not in self.keys:
            raise ValueError("the previous master key id is not among the master keys")
        for kid, key in self.keys.items():
            if len(key) != 32:
                raise ValueError(f"master key {kid} is not 256 bits")
        if len(self.blind_index_key) < 32:
            raise ValueError("the blind-index key must be at least 256 bits")

    @classmethod
    def from_json(cls, raw: Any) -> MasterKeys:
        current_from = raw.get("current_from")
        return cls(
            keys={kid: _b64(value) for kid, value in raw["master_keys"].items()},
            current=raw["current"],
            blind_index_key=_b64(raw["blind_index_key"]),
            previous=raw.get("previous"),
            current_from=None if current_from is None else parse_stamp(current_from),
        )

    def wrapping_kid(self, moment: datetime) -> str:
        """The master key that wraps at `moment`: the current one from `current_from` on."""
        if self.previous is None or self.current_from is None or moment >= self.current_from:
            return self.current
        return self.previous


class Keyring:
    """Master keys (by key id) that wrap data keys, and the blind-index key. Loaded from the
    component's data-keys file (`load`), it follows the file while the process runs."""

    def __init__(
        self,
        master_keys: dict[str, bytes],
        current: str,
        blind_index_key: bytes,
        *,
        previous: str | None = None,
        current_from: datetime | None = None,
    ):
        self._static = MasterKeys(master_keys, current, blind_index_key, previous, current_from)
        self._file: WatchedKeyFile[MasterKeys] | None = None
        # Unwrapped data keys by their wrapped form: a page of records about many people
        # unwraps each key once. The wrapped key is still read from the database every time,
        # so deleting it (crypto-shredding) takes effect at once.
        self._unwrapped: dict[tuple[str, bytes, str], bytes] = {}

    @classmethod
    def load(cls, keys_dir: Path, component: str) -> Keyring:
        file = WatchedKeyFile(keys_dir / data_keys_file(component), MasterKeys.from_json)
        keys = file.get()
        keyring = cls(
            keys.keys,
            keys.current,
            keys.blind_index_key,
            previous=keys.previous,
            current_from=keys.current_from,
        )
        keyring._file = file
        return keyring

    @property
    def master_keys(self) -> MasterKeys:
        """The master keys as the file holds them now (for a keyring loaded from one)."""
        return self._static if self._file is None else self._file.get()

    @property
    def current(self) -> str:
        """The id of the master key that wraps now."""
        return self.master_keys.wrapping_kid(datetime.now(UTC))

    def new_data_key(self, owner_id: str) -> tuple[bytes, WrappedKey]:
        data_key = AESGCM.generate_key(bit_length=256)
        return data_key, self.wrap(data_key, owner_id)

    def wrap(self, data_key: bytes, owner_id: str) -> WrappedKey:
        keys = self.master_keys
        kid = keys.wrapping_kid(datetime.now(UTC))
        return WrappedKey(kid, seal(keys.keys[kid], data_key, b"dek/" + owner_id.encode()))

    def unwrap(self, wrapped: WrappedKey, owner_id: str) -> bytes:
        cache_key = (wrapped.kid, wrapped.wrapped, owner_id)
        data_key = self._unwrapped.get(cache_key)
        if data_key is not None:
            return data_key
        master = self.master_keys.keys.get(wrapped.kid)
        if master is None and self._file is not None and self._file.recheck():
            # Wrapped by another process with a master key a rotation just added.
            master = self.master_keys.keys.get(wrapped.kid)
        if master is None:
            raise DecryptionFailed("the master key that wrapped this data key is not loaded")
        data_key = open_sealed(master, wrapped.wrapped, b"dek/" + owner_id.encode())
        if len(self._unwrapped) >= UNWRAPPED_KEYS_HELD:
            for oldest in list(self._unwrapped)[: UNWRAPPED_KEYS_HELD // 10]:
                del self._unwrapped[oldest]
        self._unwrapped[cache_key] = data_key
        return data_key

    def blind_index(self, kind: str, normalised_value: str) -> str:
        """A keyed hash for equality lookups; `kind` separates index domains."""
        message = f"{kind}:{normalised_value}".encode()
        return hmac.new(self.master_keys.blind_index_key, message, hashlib.sha256).hexdigest()
