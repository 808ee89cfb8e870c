"""Field encryption and blind indexing.

Envelope encryption: every participant has a data key (DEK); the DEK is stored
wrapped by a master key that has a key id, so master keys rotate by re-wrapping
DEKs, and deleting a participant's DEK makes all their ciphertext unreadable
(crypto-shredding). Each ciphertext is bound with associated data to its
table, column and row, so a value copied to another row or column fails to decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.keys import data_keys_file, read_json

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


class Keyring:
    """Master keys (by key id) that wrap data keys, and the blind-index key."""

    def __init__(self, master_keys: dict[str, bytes], current: str, blind_index_key: bytes):
        if current not in master_keys:
            raise ValueError("the current master key id is not among the master keys")
        for kid, key in master_keys.items():
            if len(key) != 32:
                raise ValueError(f"master key {kid} is not 256 bits")
        if len(blind_index_key) < 32:
            raise ValueError("the blind-index key must be at least 256 bits")
        self._master_keys = master_keys
        self.current = current
        self._blind_index_key = blind_index_key
        # Unwrapped data keys by their wrapped form: a page of records about many people
        # unwraps each key once. The wrapped key is still read from the database every time,
        # so deleting it (crypto-shredding) takes effect at once.
        self._unwrapped: dict[tuple[str, bytes, str], bytes] = {}

    @classmethod
    def load(cls, keys_dir: Path, component: str) -> Keyring:
        raw = read_json(keys_dir, data_keys_file(component))
        return cls(
            {kid: _b64(value) for kid, value in raw["master_keys"].items()},
            raw["current"],
            _b64(raw["blind_index_key"]),
        )

    def new_data_key(self, owner_id: str) -> tuple[bytes, WrappedKey]:
        data_key = AESGCM.generate_key(bit_length=256)
        return data_key, self.wrap(data_key, owner_id)

    def wrap(self, data_key: bytes, owner_id: str) -> WrappedKey:
        sealed = seal(self._master_keys[self.current], data_key, b"dek/" + owner_id.encode())
        return WrappedKey(self.current, sealed)

    def unwrap(self, wrapped: WrappedKey, owner_id: str) -> bytes:
        cache_key = (wrapped.kid, wrapped.wrapped, owner_id)
        data_key = self._unwrapped.get(cache_key)
        if data_key is not None:
            return data_key
        master = self._master_keys.get(wrapped.kid)
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
        return hmac.new(self._blind_index_key, message, hashlib.sha256).hexdigest()
