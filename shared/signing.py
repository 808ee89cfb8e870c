"""Ed25519 signing keys with validity periods, for signatures that must outlive a rotation.

A key set is a JWKS file in BROEN_KEYS_DIR whose members carry `not_before` (RFC 3339) and,
once retired, `not_after`. The last key whose `not_before` has come signs (it must be
private), every key verifies. A signature verifies only with the key its `kid` names, only
with the set's `alg` and the expected `typ`, and only if the moment it claims to be signed
at lies in that key's validity: the caller reads that moment from its payload and asks
`Verified.check_signed_at`. To rotate (`broen admin keys rotate`, shared/keys.py): append a
new key whose `not_before` lies a little ahead, and set the old key's `not_after` just after
that; `public_jwks()` publishes both (public parts and validity periods) before the new one
signs, and what was signed before still verifies. A key set loaded from its file follows
the file while the process runs (`shared.keys.WatchedKeyFile`).

The access tokens (`gateway/tokens.py`), the audit heads (`gateway/audit.py`) and the consent
receipts (`services/consent/receipts.py`) are such key sets; each subclass names its file,
its `alg` and what its errors call it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Self

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import KeySet, OKPKey

from shared.keys import WatchedKeyFile
from shared.settings import ConfigurationError

# A key's not_before is stamped where the key was made; allow for that clock being ahead.
NOT_BEFORE_LEEWAY = timedelta(minutes=5)
# The not_before of a key made before keys had one (token keys): valid since ever.
SINCE_EVER = datetime(1970, 1, 1, tzinfo=UTC)


class SigningKeyError(ConfigurationError):
    """A key file exists but cannot serve as the key set; the message says why."""


class InvalidSignature(Exception):
    """A signed token that does not verify; the message says why (never its contents)."""


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise SigningKeyError(f"{where}: {value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise SigningKeyError(f"{where}: {value!r} has no time zone")
    return moment


@contextlib.contextmanager
def _algorithm_in_use(algorithm: str) -> Iterator[None]:
    # "EdDSA" (RFC 8037) is the older name of the same Ed25519 signature that RFC 9864 calls
    # "Ed25519"; it is deprecated because it also covers Ed448, and joserfc warns on every
    # use. These keys are Ed25519 only (checked on import), and a key set that uses the old
    # name does so on purpose: most verifiers still know the signature only by it.
    if algorithm != "EdDSA":
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "EdDSA is deprecated", SecurityWarning)
        yield


@dataclass(frozen=True)
class ValidityKey:
    key: OKPKey
    kid: str
    not_before: datetime
    not_after: datetime | None

    def valid_at(self, moment: datetime) -> bool:
        if moment < self.not_before - NOT_BEFORE_LEEWAY:
            return False
        return self.not_after is None or moment <= self.not_after


@dataclass(frozen=True)
class Verified:
    """What a token signs, and the key that vouched for it."""

    payload: bytes
    key: ValidityKey

    @property
    def kid(self) -> str:
        return self.key.kid

    def check_signed_at(self, moment: datetime) -> None:
        """Refuse the token unless `moment` (when its payload says it was signed) lies in the
        key's validity: a retired key cannot vouch for anything signed after it retired."""
        if not self.key.valid_at(moment):
            raise InvalidSignature(
                f"signed at {format_time(moment)}, outside the validity of key {self.kid}"
            )


class ValidityKeys:
    """Ed25519 keys with validity periods: the last one whose not_before has come signs (when
    private), every one verifies. Subclasses set `filename` (in BROEN_KEYS_DIR), `algorithm`
    (the JWS `alg`) and `label` (what messages call the set); `not_before_required = False`
    accepts keys without one (valid since ever)."""

    filename: ClassVar[str | None] = None
    algorithm: ClassVar[str] = "Ed25519"
    label: ClassVar[str] = "signing keys"
    not_before_required: ClassVar[bool] = True

    def __init__(
        self,
        keys: Sequence[ValidityKey],
        *,
        file: WatchedKeyFile[tuple[ValidityKey, ...]] | None = None,
    ) -> None:
        self._static = self._checked(keys, self.label)
        self._file = file

    @classmethod
    def _checked(cls, keys: Sequence[ValidityKey], where: str) -> tuple[ValidityKey, ...]:
        if not keys:
            raise SigningKeyError(f"no {cls.label}")
        if len({key.kid for key in keys}) != len(keys):
            raise SigningKeyError(f"{where}: two keys share a kid")
        return tuple(keys)

    @classmethod
    def load(cls, keys_dir: Path, filename: str | None = None) -> Self:
        """The key set in `keys_dir / filename` (by default the class's file), whose signing
        keys are private, re-read when the file is replaced."""
        filename = filename or cls.filename
        if filename is None:
            raise TypeError(f"{cls.__name__}.load needs the name of the key file")
        path = keys_dir / filename

        def parse(data: Any) -> tuple[ValidityKey, ...]:
            keys = cls._parse(data, str(path))
            now = datetime.now(UTC)
            signer = _signer_at(keys, now)
            for key in keys[keys.index(signer) :]:  # the one signing now, and any after it
                if not key.key.is_private:
                    raise SigningKeyError(
                        f"{path}: key {key.kid} signs, so it must be a private key (with its "
                        '"d"); this file holds only its public part'
                    )
            return keys

        file = WatchedKeyFile(path, parse)
        return cls(file.get(), file=file)

    @classmethod
    def from_jwks(cls, data: Any, where: str | None = None) -> Self:
        """Keys from a JWKS, private or public (the published set verifies as well)."""
        return cls(cls._parse(data, where or cls.label))

    @classmethod
    def _parse(cls, data: Any, where: str) -> tuple[ValidityKey, ...]:
        try:
            imported = KeySet.import_key_set(data).keys
            members = list(data["keys"])
        except (JoseError, ValueError, TypeError, KeyError):
            raise SigningKeyError(f"{where} is not a valid JWKS") from None
        keys = []
        for key, member in zip(imported, members, strict=True):
            if not isinstance(key, OKPKey) or key.curve_name != "Ed25519" or not key.kid:
                raise SigningKeyError(f"{where} must hold Ed25519 keys with a kid")
            if member.get("alg", cls.algorithm) != cls.algorithm:
                raise SigningKeyError(
                    f"{where}: key {key.kid} is for alg {member['alg']!r}, "
                    f"these keys sign with {cls.algorithm!r}"
                )
            if "not_before" not in member and cls.not_before_required:
                raise SigningKeyError(f"{where}: key {key.kid} has no not_before")
            not_before = member.get("not_before")
            not_after = member.get("not_after")
            keys.append(
                ValidityKey(
                    key=key,
                    kid=str(key.kid),
                    not_before=SINCE_EVER
                    if not_before is None
                    else _parse_time(not_before, f"{where}: {key.kid}"),
                    not_after=None
                    if not_after is None
                    else _parse_time(not_after, f"{where}: {key.kid}"),
                )
            )
        return cls._checked(keys, where)

    @property
    def keys(self) -> tuple[ValidityKey, ...]:
        """Every key, oldest first: as the file holds them now, for a set loaded from one."""
        return self._static if self._file is None else self._file.get()

    @property
    def signer(self) -> ValidityKey:
        return self.signer_at(datetime.now(UTC))

    def signer_at(self, moment: datetime) -> ValidityKey:
        """The key that signs at `moment`: the last one whose not_before has come by then."""
        return _signer_at(self.keys, moment)

    def find(self, kid: str) -> ValidityKey | None:
        """The key `kid` names. An unknown kid makes a set loaded from a file look at it again
        first: another process may have signed with a key a rotation just added."""
        for key in self.keys:
            if key.kid == kid:
                return key
        if self._file is not None and self._file.recheck():
            return self.find(kid)
        return None

    def public_jwks(self) -> dict[str, Any]:
        """Every verifying key, public parts only, with its validity period."""
        published = []
        for validity_key in self.keys:
            public = validity_key.key.as_dict(private=False)
            public.pop("d", None)
            public.update(alg=self.algorithm, use="sig")
            if validity_key.not_before != SINCE_EVER:
                public["not_before"] = format_time(validity_key.not_before)
            if validity_key.not_after is not None:
                public["not_after"] = format_time(validity_key.not_after)
            else:
                public.pop("not_after", None)
            published.append(public)
        return {"keys": published}

    def sign(self, payload: bytes, *, typ: str, at: datetime | None = None) -> str:
        """A compact JWS of `payload` by the key that signs at `at` (default: now), header
        {alg, kid, typ}."""
        signer = self.signer_at(at or datetime.now(UTC))
        header = {"alg": self.algorithm, "kid": signer.kid, "typ": typ}
        with _algorithm_in_use(self.algorithm):
            return jws.serialize_compact(header, payload, signer.key, algorithms=[self.algorithm])

    def verify(self, token: str, *, typ: str) -> Verified:
        """Check a compact JWS: a known kid, this set's alg, `typ`, and the signature by the
        key the kid names. The caller then checks when it was signed (`check_signed_at`)."""
        try:
            header = jws.extract_compact(token.encode()).protected
        except (JoseError, ValueError, TypeError):
            raise InvalidSignature("not a compact JWS") from None
        kid = header.get("kid")
        validity_key = self.find(kid) if isinstance(kid, str) else None
        if validity_key is None:
            raise InvalidSignature(f"signed with an unknown key {kid!r}")
        if header.get("typ") != typ or header.get("alg") != self.algorithm:
            raise InvalidSignature(f"not a {typ} (typ or alg)")
        try:
            with _algorithm_in_use(self.algorithm):
                payload = jws.deserialize_compact(
                    token, validity_key.key, algorithms=[self.algorithm]
                ).payload
        except (JoseError, ValueError, TypeError):
            raise InvalidSignature(f"the signature does not verify with key {kid}") from None
        return Verified(payload=payload, key=validity_key)


def _signer_at(keys: Sequence[ValidityKey], moment: datetime) -> ValidityKey:
    # A rotation appends a key ahead of its time; until it comes the one before signs. (A
    # single key stamped by a clock a little ahead of this one signs all the same.)
    begun = [key for key in keys if key.not_before <= moment]
    return begun[-1] if begun else keys[0]


def kid_of(token: str) -> str:
    """The kid in a compact JWS's protected header (unverified: for bookkeeping only)."""
    return str(jws.extract_compact(token.encode()).protected["kid"])
