"""Key material on disk: one directory (`BROEN_KEYS_DIR`), one file per key set.

In production the directory is mounted from a secret store; `broen admin keys init`
creates it once. Nothing here invents a key silently: a missing file is an error
that names the file and the command that creates it.

Rotation without downtime (`broen admin keys rotate`, README "Rotating keys"): a file is
only ever replaced whole (written to a temporary file, then renamed), so no process reads
half of it, and a running process takes up the new version without a restart
(`WatchedKeyFile`): it looks at the file's identity at most every KEY_FILE_CHECK_SECONDS,
and at once (at most every KEY_FILE_RECHECK_SECONDS) when it meets a key id it does not
know. A rotation adds the new key ahead of its time: it signs, or wraps, only from
`not_before` (by default ROTATION_DELAY_SECONDS later), so every replica reading the
directory knows it, and verifies with it, before anything made with it reaches them. The
key it replaces stays to verify or unwrap, retired RETIRE_GRACE_SECONDS after that moment.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from joserfc.jwk import KeySet, OKPKey

from shared.settings import ConfigurationError

log = logging.getLogger("broen.keys")

T = TypeVar("T")

INTERNAL_JWKS = "internal-jwks.json"
# The gateway's access-token keys: a JWKS of private Ed25519 keys with validity like the audit
# keys (files made before rotation existed have no not_before: valid since ever).
TOKEN_SIGNING_JWKS = "token-signing.jwks.json"  # noqa: S105 (a file name)
# The gateway's audit-head signing keys: a JWKS of private Ed25519 keys, the last one whose
# not_before has come signs, every one verifies. Each key carries its validity ("not_before",
# and "not_after" once it is retired), so heads signed before a rotation still verify
# against the published keys.
AUDIT_SIGNING_JWKS = "audit-signing.jwks.json"
# The consent service's receipt signing keys, a JWKS like the audit keys: published with their
# validity periods, so a receipt signed before a rotation still verifies.
RECEIPT_SIGNING_JWKS = "receipt-signing.jwks.json"
COMPONENTS = ("gateway", "participant", "consent", "messaging")
# The components that encrypt with a master key: fields (free text, national ids) in the
# services, webhook signing secrets in the gateway.
DATA_KEY_COMPONENTS = ("gateway", "participant", "consent", "messaging")


# A running process looks at each key file it uses at most this often, and re-reads it when
# it was replaced; at once, but at most this often, when it meets a key id it does not know.
KEY_FILE_CHECK_SECONDS = 10.0
KEY_FILE_RECHECK_SECONDS = 1.0
# How long after a rotation the new key starts signing or wrapping, by default: longer than
# every replica takes to see the new file (KEY_FILE_CHECK_SECONDS where they share the
# directory; a Kubernetes Secret volume can take a minute or two to reach every node).
ROTATION_DELAY_SECONDS = 120
# The replaced key retires this long after the new one took over: room for a process that
# looked at the file a little late, and for clocks a little apart.
RETIRE_GRACE_SECONDS = 60


class MissingKey(ConfigurationError):
    """A key file the component needs is not there."""


class RotationRefused(ConfigurationError):
    """A rotation, prune or drop that would break something; the message says what to do."""


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


def replace_json_file(path: Path, value: Any) -> None:
    """Replace the file `path` whole (a key file, the exported audit head): written (0600)
    to a temporary file beside it, then renamed over it, so a process reading it sees the
    old version or the new, never half."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(value, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class WatchedKeyFile(Generic[T]):
    """A key file parsed into `T`, re-read when it is replaced, so a running process takes up
    a rotation without a restart. The first read happens here and raises (a component does
    not start without its keys); a later version that cannot be parsed is logged and the
    keys read before stay in use."""

    def __init__(self, path: Path, parse: Callable[[Any], T]) -> None:
        self.path = path
        self._parse = parse
        self._identity = self._stat()
        self._value = parse(read_json(path.parent, path.name))
        self._checked = time.monotonic()
        self._rechecked = -KEY_FILE_RECHECK_SECONDS  # the first recheck may come at once

    def get(self) -> T:
        """The keys, looking at the file first when KEY_FILE_CHECK_SECONDS have passed."""
        now = time.monotonic()
        if now - self._checked >= KEY_FILE_CHECK_SECONDS:
            self._checked = now
            self._reload_if_replaced()
        return self._value

    def recheck(self) -> bool:
        """Look at the file now (at most every KEY_FILE_RECHECK_SECONDS): for a key id that is
        not known yet. Returns whether a new version was read."""
        now = time.monotonic()
        if now - self._rechecked < KEY_FILE_RECHECK_SECONDS:
            return False
        self._rechecked = self._checked = now
        return self._reload_if_replaced()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            found = os.stat(self.path)  # follows a Secret volume's symlinks to the real file
        except FileNotFoundError:
            return None
        return (found.st_ino, found.st_mtime_ns, found.st_size)

    def _reload_if_replaced(self) -> bool:
        identity = self._stat()
        if identity is None or identity == self._identity:
            return False
        self._identity = identity
        try:
            self._value = self._parse(read_json(self.path.parent, self.path.name))
        except Exception as error:  # never key material in the log: the file and the kind
            log.warning(
                "key file %s changed but cannot be used (%s); the keys read before stay in use",
                self.path.name,
                error if isinstance(error, ConfigurationError) else type(error).__name__,
            )
            return False
        log.info("key file %s re-read", self.path.name)
        return True


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
    for kind in SIGNING_KEY_SETS:
        name, new_key = _SIGNING_FILES[kind]
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


def new_token_signing_key(not_before: datetime) -> dict[str, Any]:
    """A private access-token signing key (JWK) valid from `not_before` on."""
    return new_validity_signing_key("tok", "Ed25519", not_before)


_SIGNING_FILES: dict[str, tuple[str, Callable[[datetime], dict[str, Any]]]] = {
    "token-signing": (TOKEN_SIGNING_JWKS, new_token_signing_key),
    "audit-signing": (AUDIT_SIGNING_JWKS, new_audit_signing_key),
    "receipt-signing": (RECEIPT_SIGNING_JWKS, new_receipt_signing_key),
}
SIGNING_KEY_SETS = tuple(_SIGNING_FILES)


# ------------------------------------------------------------------------------ rotation


def stamp(moment: datetime) -> str:
    """A moment as key files state it: RFC 3339, UTC, whole seconds."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_stamp(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return moment


def _not_before(member: dict[str, Any]) -> datetime:
    # A token key made before rotation existed has none: valid since ever.
    value = member.get("not_before")
    return datetime.min.replace(tzinfo=UTC) if value is None else parse_stamp(value)


def rotate_signing_keys(
    keys_dir: Path, kind: str, *, now: datetime, delay: timedelta
) -> dict[str, Any]:
    """Append a new key to the signing key set `kind` (token-signing, audit-signing,
    receipt-signing) that signs from `now + delay`; the key signing until then retires
    RETIRE_GRACE_SECONDS after that and stays to verify what it signed. Refused while the
    previous rotation's key has not begun to sign. Returns what changed (no key material)."""
    name, new_key = _SIGNING_FILES[kind]
    data = read_json(keys_dir, name)
    members: list[dict[str, Any]] = data["keys"]
    waiting = [m for m in members if _not_before(m) > now]
    if waiting:
        raise RotationRefused(
            f"{name}: key {waiting[-1]['kid']} from the last rotation signs only from "
            f"{waiting[-1]['not_before']}; rotate again after that"
        )
    signs_from = now + delay
    retiring = members[-1]
    retires_at = signs_from + timedelta(seconds=RETIRE_GRACE_SECONDS)
    if "not_after" not in retiring or parse_stamp(retiring["not_after"]) > retires_at:
        retiring["not_after"] = stamp(retires_at)
    added = new_key(signs_from)
    members.append(added)
    replace_json_file(keys_dir / name, data)
    return {
        "file": name,
        "kid": added["kid"],
        "signs_from": added["not_before"],
        "retired_kid": retiring["kid"],
        "retired_after": retiring["not_after"],
    }


def prune_retired_keys(
    keys_dir: Path, kind: str, *, now: datetime, keep_for: timedelta
) -> list[str]:
    """Drop the keys of set `kind` retired more than `keep_for` ago (everything they signed
    has expired by then); never the key that signs. Returns the kids dropped."""
    name, _ = _SIGNING_FILES[kind]
    data = read_json(keys_dir, name)
    members: list[dict[str, Any]] = data["keys"]
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    for member in members[:-1]:
        expired = "not_after" in member and parse_stamp(member["not_after"]) + keep_for < now
        (dropped if expired else kept).append(member)
    if dropped:
        data["keys"] = [*kept, members[-1]]
        replace_json_file(keys_dir / name, data)
    return [str(member["kid"]) for member in dropped]


def rotate_master_key(
    keys_dir: Path, component: str, *, now: datetime, delay: timedelta
) -> dict[str, Any]:
    """Add a new master key to the component's data keys that wraps new data keys from
    `now + delay` ("current", "current_from"); until then the one it replaces ("previous")
    does. Every master key stays to unwrap what it wrapped until it is dropped. Refused
    until the previous rotation's key has wrapped for RETIRE_GRACE_SECONDS (so that no
    process still wraps with the key before it)."""
    name = data_keys_file(component)
    data = read_json(keys_dir, name)
    if "current_from" in data:
        settled = parse_stamp(data["current_from"]) + timedelta(seconds=RETIRE_GRACE_SECONDS)
        if now < settled:
            raise RotationRefused(
                f"{name}: master key {data['current']} from the last rotation wraps from "
                f"{data['current_from']}; rotate again from {stamp(settled)}"
            )
    kid = f"mk-{secrets.token_hex(4)}"
    data["master_keys"][kid] = new_symmetric_key()
    data["previous"], data["current"] = data["current"], kid
    data["current_from"] = stamp(now + delay)
    replace_json_file(keys_dir / name, data)
    return {
        "file": name,
        "kid": kid,
        "wraps_from": data["current_from"],
        "previous_kid": data["previous"],
    }


def check_master_key_drop(data: dict[str, Any], kid: str, *, now: datetime) -> None:
    """Refuse (RotationRefused) to drop a master key that wraps, or that a process may still
    wrap with; whether anything stored is still wrapped under it is the caller's to check."""
    if kid not in data["master_keys"]:
        raise RotationRefused(f"there is no master key {kid}")
    if kid == data["current"]:
        raise RotationRefused(f"master key {kid} is the current one; rotate first")
    if kid == data.get("previous"):
        until = parse_stamp(data["current_from"]) + timedelta(seconds=RETIRE_GRACE_SECONDS)
        if now < until:
            raise RotationRefused(
                f"master key {kid} may still wrap new data keys until {stamp(until)}; "
                "re-wrap after that, then drop it"
            )


def drop_master_key(keys_dir: Path, component: str, kid: str, *, now: datetime) -> None:
    """Remove master key `kid` from the component's data keys (see check_master_key_drop)."""
    name = data_keys_file(component)
    data = read_json(keys_dir, name)
    check_master_key_drop(data, kid, now=now)
    del data["master_keys"][kid]
    if data.get("previous") == kid:
        del data["previous"], data["current_from"]
    replace_json_file(keys_dir / name, data)
