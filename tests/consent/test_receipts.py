"""Consent receipts: Kantara-shaped claims without personal data, signed with keys whose
validity is published, verified by an independent JOSE library (PyJWT) and across rotation."""

from __future__ import annotations

import base64
import json
import re
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from joserfc.jwk import OKPKey

from services.consent.receipts import (
    RECEIPT_TYPE,
    InvalidReceipt,
    ReceiptKeys,
    receipt_claims,
    sign_receipt,
    verify_receipt,
)
from services.consent.schemas import ConsentRead
from shared.crypto import Keyring
from shared.keys import (
    AUDIT_SIGNING_JWKS,
    RECEIPT_SIGNING_JWKS,
    data_keys_file,
    init_keys_dir,
    new_receipt_signing_key,
)
from shared.signing import SigningKeyError, format_time

ISSUER = "https://broen.example"
PARTICIPANT = uuid.UUID("5f0c9a52-3f0e-4b7e-9d51-0c7a2d1e8b43")
NATIONAL_ID = "01010750160"


def make_consent(**overrides: Any) -> ConsentRead:
    given = datetime(2025, 8, 18, 9, 30, tzinfo=UTC)
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "participant_id": PARTICIPANT,
        "grantor": "participant",
        "grantor_relation": "self",
        "controllers": ["974760673", "889640782"],
        "disclosers": ["nav", "skole"],
        "recipients": ["skole", "nav"],
        "purposes": ["oppfolging", "tilrettelegging"],
        "categories": ["attendance", "nav.followup"],
        "valid_from": given,
        "valid_to": given + timedelta(days=365),
        "status": "active",
        "notice": {"version": "broen-samtykke-1", "hash": "sha256:" + "ab" * 32, "language": "nb"},
        "collection": {"method": "digital"},
        "created_at": given,
        "history": [{"type": "given", "at": given, "actor": "participant"}],
    }
    values.update(overrides)
    return ConsentRead.model_validate(values)


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url_encode(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def verify_independently(token: str, published: dict[str, Any]) -> dict[str, Any]:
    """What a verifier does with PyJWT and the published JWKS alone (module docstring of
    services/consent/receipts.py): the key the kid names, the signature, and iat within the
    key's validity."""
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == ("EdDSA", RECEIPT_TYPE)
    [jwk] = [key for key in published["keys"] if key["kid"] == header["kid"]]
    claims: dict[str, Any] = jwt.decode(token, jwt.PyJWK(jwk), algorithms=["EdDSA"], issuer=ISSUER)
    signed_at = datetime.fromtimestamp(claims["iat"], UTC)
    not_before = datetime.fromisoformat(jwk["not_before"].replace("Z", "+00:00"))
    assert signed_at >= not_before - timedelta(minutes=5)
    if "not_after" in jwk:
        assert signed_at <= datetime.fromisoformat(jwk["not_after"].replace("Z", "+00:00"))
    return claims


def publish(keys: ReceiptKeys) -> dict[str, Any]:
    # Through JSON, as a verifier receives it.
    published: dict[str, Any] = json.loads(json.dumps(keys.public_jwks()))
    return published


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    init_keys_dir(tmp_path)
    return tmp_path


def write_receipt_keys(keys_dir: Path, *members: dict[str, Any]) -> None:
    (keys_dir / RECEIPT_SIGNING_JWKS).write_text(json.dumps({"keys": list(members)}))


# --- claims ---------------------------------------------------------------------------------


def test_the_claims_use_kantara_names_and_broens_own_for_the_rest() -> None:
    consent = make_consent()
    now = datetime(2025, 9, 1, 12, 0, tzinfo=UTC)

    claims = receipt_claims(consent, issuer=ISSUER, now=now)

    assert claims["version"] == "KI-CR-v1.1.0"
    assert claims["jurisdiction"] == "NO"
    assert claims["consentTimestamp"] == int(consent.created_at.timestamp())
    assert claims["iat"] == int(now.timestamp())
    assert claims["jti"] == claims["consentReceiptID"]
    assert uuid.UUID(claims["consentReceiptID"])
    assert claims["collectionMethod"] == "digital"
    assert claims["language"] == "nb"
    assert claims["piiPrincipalId"] == str(PARTICIPANT)
    assert claims["piiControllers"] == [
        {"piiController": "974760673"},
        {"piiController": "889640782"},
    ]
    [service] = claims["services"]
    assert [p["purpose"] for p in service["purposes"]] == ["oppfolging", "tilrettelegging"]
    first = service["purposes"][0]
    assert first["purposeCategory"] == ["oppfolging"]
    assert first["consentType"] == "EXPLICIT"
    assert first["piiCategory"] == ["attendance", "nav.followup"]
    assert first["thirdPartyDisclosure"] is True
    assert first["thirdPartyName"] == "skole, nav"
    assert "2026-08-18T09:30:00Z" in first["termination"]
    assert (claims["sensitive"], claims["spiCat"]) == (False, [])
    assert "policyUrl" not in claims
    assert claims["consent_id"] == str(consent.id)
    assert claims["status"] == "active"
    assert (claims["grantor"], claims["grantor_relation"]) == ("participant", "self")
    assert (claims["disclosers"], claims["recipients"]) == (["nav", "skole"], ["skole", "nav"])
    assert (claims["valid_from"], claims["valid_to"]) == (
        "2025-08-18T09:30:00Z",
        "2026-08-18T09:30:00Z",
    )
    assert claims["notice"] == {
        "version": "broen-samtykke-1",
        "hash": "sha256:" + "ab" * 32,
        "language": "nb",
    }
    policy = "https://broen.example/personvern"
    assert receipt_claims(consent, issuer=ISSUER, now=now, policy_url=policy)["policyUrl"] == policy


def test_a_consent_covering_health_adjustment_is_marked_sensitive() -> None:
    consent = make_consent(categories=["attendance", "health.adjustment"])

    claims = receipt_claims(consent, issuer=ISSUER, now=datetime.now(UTC))

    assert claims["sensitive"] is True
    assert claims["spiCat"] == ["health.adjustment"]


def all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for item in value.values() for k in all_keys(item)}
    if isinstance(value, list):
        return {k for item in value for k in all_keys(item)}
    return set()


def test_the_receipt_holds_no_national_id_or_name() -> None:
    staff_id = str(uuid.uuid4())
    consent = make_consent(
        collection={
            "method": "paper",
            "collected_by_orgnr": "974760673",
            "collected_by_staff_id": staff_id,
            "evidence": f"Skjema signert av Kari Nordmann ({NATIONAL_ID}), arkiv 2025/117",
        },
        history=[{"type": "recorded", "at": datetime.now(UTC), "actor": f"974760673/{staff_id}"}],
    )

    claims = receipt_claims(consent, issuer=ISSUER, now=datetime.now(UTC))
    text = json.dumps(claims, ensure_ascii=False)

    assert claims["piiPrincipalId"] == str(PARTICIPANT)
    assert claims["collected_by"] == "974760673"
    assert "Nordmann" not in text and staff_id not in text and "arkiv" not in text
    assert not re.search(r"(?<!\d)\d{11}(?!\d)", text)
    personal = {"name", "national_id", "fnr", "fodselsnummer", "birth_date", "address", "email"}
    assert not all_keys(claims) & personal


# --- signing and verifying --------------------------------------------------------------------


def test_a_receipt_verifies_with_pyjwt_and_the_published_keys_alone(keys_dir: Path) -> None:
    keys = ReceiptKeys.load(keys_dir)
    claims = receipt_claims(make_consent(), issuer=ISSUER, now=datetime.now(UTC))

    token = sign_receipt(keys, claims)
    published = publish(keys)

    assert all("d" not in key and "not_before" in key for key in published["keys"])
    assert verify_independently(token, published) == claims
    assert verify_receipt(ReceiptKeys.from_jwks(published), token) == claims


def test_a_receipt_signed_before_a_rotation_still_verifies_and_new_ones_use_the_new_key(
    keys_dir: Path,
) -> None:
    now = datetime.now(UTC)
    original = json.loads((keys_dir / RECEIPT_SIGNING_JWKS).read_text())["keys"][-1]
    old = {**original, "not_before": "2024-01-01T00:00:00Z"}
    write_receipt_keys(keys_dir, old)
    old_keys = ReceiptKeys.load(keys_dir)
    consent = make_consent()
    early = sign_receipt(
        old_keys, receipt_claims(consent, issuer=ISSUER, now=now - timedelta(days=2))
    )
    # Rotation an hour ago: the old key retires, a new key is appended and signs from then on.
    rotated_at = now - timedelta(hours=1)
    write_receipt_keys(
        keys_dir, {**old, "not_after": format_time(rotated_at)}, new_receipt_signing_key(rotated_at)
    )
    rotated = ReceiptKeys.load(keys_dir)

    late = sign_receipt(rotated, receipt_claims(consent, issuer=ISSUER, now=now))
    published = publish(rotated)

    assert jwt.get_unverified_header(early)["kid"] == old["kid"]
    assert jwt.get_unverified_header(late)["kid"] == rotated.signer.kid != old["kid"]
    assert published["keys"][0]["not_after"] == format_time(rotated_at)
    assert "not_after" not in published["keys"][1]
    for token in (early, late):
        assert verify_independently(token, published)["iss"] == ISSUER
        assert verify_receipt(ReceiptKeys.from_jwks(published), token)["consent_id"] == str(
            consent.id
        )
    # The retired key cannot vouch for a receipt dated after it retired.
    forged_late = sign_receipt(old_keys, receipt_claims(consent, issuer=ISSUER, now=now))
    with pytest.raises(InvalidReceipt, match="outside the validity"):
        verify_receipt(ReceiptKeys.from_jwks(published), forged_late)


def tamper_payload(token: str, **changes: Any) -> str:
    header, payload, signature = token.split(".")
    claims = {**json.loads(b64url_decode(payload)), **changes}
    return ".".join([header, b64url_encode(json.dumps(claims).encode()), signature])


def test_a_tampered_receipt_fails(keys_dir: Path) -> None:
    keys = ReceiptKeys.load(keys_dir)
    token = sign_receipt(keys, receipt_claims(make_consent(), issuer=ISSUER, now=datetime.now(UTC)))
    published = publish(keys)
    widened = tamper_payload(token, recipients=["skole", "nav", "kommune"])
    # Same kid, signed by a key that is not Broen's.
    impostor = OKPKey.generate_key("Ed25519", parameters={"kid": keys.signer.kid})
    header, payload, _ = token.split(".")
    forged_signature = b64url_encode(impostor.private_key.sign(f"{header}.{payload}".encode()))
    forged = f"{header}.{payload}.{forged_signature}"

    for bad in (widened, forged):
        with pytest.raises(InvalidReceipt, match="the signature does not verify"):
            verify_receipt(keys, bad)
        with pytest.raises(jwt.InvalidSignatureError):
            verify_independently(bad, published)
    with pytest.raises(InvalidReceipt, match="not a compact JWS"):
        verify_receipt(keys, "not-a-receipt")


def test_a_token_of_another_kind_signed_with_the_receipt_key_is_no_receipt(
    keys_dir: Path,
) -> None:
    keys = ReceiptKeys.load(keys_dir)

    other = keys.sign(b'{"iat": 1, "version": "KI-CR-v1.1.0"}', typ="something-else+jwt")
    not_claims = keys.sign(b"[1, 2]", typ=RECEIPT_TYPE)

    with pytest.raises(InvalidReceipt, match="typ or alg"):
        verify_receipt(keys, other)
    with pytest.raises(InvalidReceipt, match="not a consent receipt"):
        verify_receipt(keys, not_claims)


# --- keys --------------------------------------------------------------------------------------


def test_a_key_file_whose_last_key_is_not_private_is_refused(keys_dir: Path) -> None:
    private = json.loads((keys_dir / RECEIPT_SIGNING_JWKS).read_text())["keys"][-1]
    public = {name: value for name, value in private.items() if name != "d"}
    write_receipt_keys(keys_dir, public)

    with pytest.raises(SigningKeyError, match="signs, so it must be a private key"):
        ReceiptKeys.load(keys_dir)


def test_the_audit_keys_cannot_serve_as_receipt_keys(keys_dir: Path) -> None:
    audit_keys = json.loads((keys_dir / AUDIT_SIGNING_JWKS).read_text())

    with pytest.raises(SigningKeyError, match="is for alg 'Ed25519'"):
        ReceiptKeys.from_jwks(audit_keys)


def test_a_retired_signing_key_signs_no_receipt(keys_dir: Path) -> None:
    now = datetime.now(UTC)
    original = json.loads((keys_dir / RECEIPT_SIGNING_JWKS).read_text())["keys"][-1]
    write_receipt_keys(keys_dir, {**original, "not_after": format_time(now - timedelta(days=1))})
    keys = ReceiptKeys.load(keys_dir)

    with pytest.raises(SigningKeyError, match="append a new key"):
        sign_receipt(keys, receipt_claims(make_consent(), issuer=ISSUER, now=now))


def test_init_creates_the_receipt_and_consent_data_keys_and_overwrites_nothing(
    tmp_path: Path,
) -> None:
    first = init_keys_dir(tmp_path)
    assert {RECEIPT_SIGNING_JWKS, data_keys_file("consent")} <= set(first)
    assert stat.S_IMODE((tmp_path / RECEIPT_SIGNING_JWKS).stat().st_mode) == 0o600
    assert Keyring.load(tmp_path, "consent").current
    # An older keys directory lacks them: the next init adds them and touches nothing else.
    (tmp_path / RECEIPT_SIGNING_JWKS).unlink()
    (tmp_path / data_keys_file("consent")).unlink()
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    second = init_keys_dir(tmp_path)

    assert sorted(second) == sorted([RECEIPT_SIGNING_JWKS, data_keys_file("consent")])
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert init_keys_dir(tmp_path) == []
    assert ReceiptKeys.load(tmp_path).signer.key.is_private
