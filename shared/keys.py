"""Key material on disk: one directory (`BROEN_KEYS_DIR`), one file per key set.

In production the directory is mounted from a secret store; `broen admin keys init`
creates it once. Nothing here invents a key silently: a missing file is an error
that names the file and the command that creates it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from joserfc.jwk import KeySet, OKPKey

from shared.settings import ConfigurationError

INTERNAL_JWKS = "internal-jwks.json"
# The gateway's audit-head signing keys: a JWKS of private Ed25519 keys, the last one signs,
# every one verifies. Each key carries its validity ("not_before", and "not_after" once it is
# retired), so heads signed before a rotation still verify against the published keys.
AUDIT_SIGNING_JWKS = "audit-signing.jwks.json"
# The consent service's receipt signing keys, a JWKS like the audit keys: published with their
# validity periods, so a receipt signed before a rotation still verifies.
RECEIPT_SIGNING_JWKS = "receipt-signing.jwks.json"
COMPONENTS = ("gateway", "participant", "consent", "messaging")
# The components that encrypt with a master key: fields (free text, national ids) in the
# services, webhook signing secrets in the gateway.
DATA_KEY_COMPONENTS = ("gateway", "participant", "consent", "messaging")


class MissingKey(ConfigurationError):
    """A key file the component needs is not there."""


def internal_key_file(component: str) -> str:
    return f"internal-{component}.jwk.json"


def data_keys_file(component: str) -> str:
    return f"data-keys-{component}.json"


def read_json(keys_dir: Path, name: str) -> Any:
    path = keys_dir / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingKey(
            f"key file {path} is missing; create the key directory with "
            "`broen admin keys init --dir DIR` and point BROEN_KEYS_DIR at it"
        ) from None


def write_secret_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle, indent=2)


def new_signing_key(kid_prefix: str) -> OKPKey:
    return OKPKey.generate_key(
        "Ed25519", parameters={"kid": f"{kid_prefix}-{secrets.token_hex(4)}", "use": "sig"}
    )


def new_symmetric_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def load_internal_signing_key(keys_dir: Path, component: str) -> OKPKey:
    return OKPKey.import_key(read_json(keys_dir, internal_key_file(component)))


def load_internal_key_set(keys_dir: Path) -> KeySet:
    return KeySet.import_key_set(read_json(keys_dir, INTERNAL_JWKS))


def init_keys_dir(keys_dir: Path) -> list[str]:
    """Create every key file that is missing; never overwrite one. Returns the files written."""
    written: list[str] = []
    keys_dir.mkdir(parents=True, exist_ok=True)
    public: list[dict[str, Any]] = []
    for component in COMPONENTS:
        path = keys_dir / internal_key_file(component)
        if not path.exists():
            write_secret_json(path, new_signing_key(component).as_dict(private=True))
            written.append(path.name)
        key = OKPKey.import_key(json.loads(path.read_text()))
        public.append(key.as_dict(private=False))
    jwks_path = keys_dir / INTERNAL_JWKS
    if not jwks_path.exists():
        jwks_path.write_text(json.dumps({"keys": public}, indent=2))
        written.append(jwks_path.name)
    for component in DATA_KEY_COMPONENTS:
        path = keys_dir / data_keys_file(component)
        if not path.exists():
            kid = f"mk-{secrets.token_hex(4)}"
            write_secret_json(
                path,
                {
                    "current": kid,
                    "master_keys": {kid: new_symmetric_key()},
                    "blind_index_key": new_symmetric_key(),
                },
            )
            written.append(path.name)
    token_path = keys_dir / "token-signing.jwks.json"
    if not token_path.exists():
        write_secret_json(token_path, {"keys": [new_signing_key("tok").as_dict(private=True)]})
        written.append(token_path.name)
    for name, new_key in (
        (AUDIT_SIGNING_JWKS, new_audit_signing_key),
        (RECEIPT_SIGNING_JWKS, new_receipt_signing_key),
    ):
        path = keys_dir / name
        if not path.exists():
            write_secret_json(path, {"keys": [new_key(datetime.now(UTC))]})
            written.append(path.name)
    return written


def new_validity_signing_key(kid_prefix: str, alg: str, not_before: datetime) -> dict[str, Any]:
    """A private Ed25519 signing key (JWK) for `alg`, valid from `not_before` on."""
    key = new_signing_key(kid_prefix).as_dict(private=True)
    stamp = not_before.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {**key, "alg": alg, "not_before": stamp}


def new_audit_signing_key(not_before: datetime) -> dict[str, Any]:
    """A private audit-head signing key (JWK) valid from `not_before` on."""
    return new_validity_signing_key("audit", "Ed25519", not_before)


def new_receipt_signing_key(not_before: datetime) -> dict[str, Any]:
    """A private consent-receipt signing key (JWK) valid from `not_before` on. Receipts are
    signed as "EdDSA", the name most verifiers know Ed25519 by (services/consent/receipts.py)."""
    return new_validity_signing_key("receipt", "EdDSA", not_before)
