"""Consent receipts: a signed record of one consent, for the participant to keep and for
anyone they show it to to check, without asking Broen.

A receipt is a JWT (compact JWS) signed by the consent service's receipt keys
(`receipt-signing.jwks.json` in BROEN_KEYS_DIR, not the token or audit keys). Its claims use
the member names of the Kantara Initiative Consent Receipt Specification v1.1 where they fit
(camelCase), the JWT claims `iss`, `iat` and `jti`, and Broen's own members (snake_case):

    iss                 the Broen installation that signed it
    iat                 when it was signed, epoch seconds
    jti                 = consentReceiptID
    version             "KI-CR-v1.1.0"
    jurisdiction        "NO"
    consentTimestamp    when the consent was given or recorded in Broen, epoch seconds
    collectionMethod    digital (in Broen), paper, verbal or digital_external
    consentReceiptID    this receipt's UUID (a new one per receipt issued)
    language            the language of the notice the grantor was shown (nb, nn, en)
    piiPrincipalId      the participant's internal Broen UUID (never a national id or name)
    piiControllers      [{"piiController": <organisation number>}], the consent's controllers
    policyUrl           the privacy policy, when the installation has one
    services            [{"service": "Broen", "purposes": [one per purpose: purpose and
                        purposeCategory (the purpose's name), consentType "EXPLICIT",
                        piiCategory (the data categories), termination, thirdPartyDisclosure
                        true, thirdPartyName (the recipients, comma-separated)]}]
    sensitive, spiCat   whether health data is covered, and which categories
    consent_id, status, grantor, grantor_relation, disclosers, recipients,
    valid_from, valid_to, withdrawn_at (RFC 3339, UTC), notice {version, hash, language},
    collected_by (the organisation number that recorded a consent given outside Broen),
    request_id (the consent request it answered)

Parties (`disclosers`, `recipients`, `thirdPartyName`) are agency types (`nav`, `skole`, ...)
or organisation numbers. A receipt states the consent as it stood at `iat`: a consent
withdrawn later still has receipts that say "active", so ask Broen for its current status.

How to verify a receipt
-----------------------
1. Take the receipt keys Broen publishes: a JWKS whose keys carry `not_before` and, once
   retired, `not_after` (RFC 3339). Keys are never removed, only retired.
2. Read the protected header: it must be {"alg": "EdDSA", "kid": ..., "typ":
   "broen-consent-receipt+jwt"}. Take the key whose `kid` it names; no such key, no receipt.
3. Verify the signature with that key, with any JOSE library (alg "EdDSA" with an Ed25519
   key, RFC 8037; RFC 9864 calls the same signature "Ed25519"). In Python, with PyJWT:
   jwt.decode(token, jwt.PyJWK(jwk), algorithms=["EdDSA"], issuer=<iss you expect>).
4. Check that `iat` lies in that key's validity: not_before <= iat (allow five minutes of
   clock difference) and, when the key has one, iat <= not_after. A retired key vouches only
   for what was signed before it retired, so a stolen old key cannot sign new receipts.
`verify_receipt` does steps 2 to 4.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from services.consent.schemas import ConsentRead
from shared.keys import RECEIPT_SIGNING_JWKS
from shared.signing import InvalidSignature, SigningKeyError, ValidityKeys

RECEIPT_TYPE = "broen-consent-receipt+jwt"
KANTARA_VERSION = "KI-CR-v1.1.0"
JURISDICTION = "NO"
SERVICE = "Broen"
# Health data (GDPR article 9): the receipt flags it as sensitive PII.
SENSITIVE_CATEGORIES = frozenset({"health.adjustment", "health.diagnosis"})


class InvalidReceipt(InvalidSignature):
    """A receipt that does not verify; the message says why."""


class ReceiptKeys(ValidityKeys):
    """The receipt keys (`receipt-signing.jwks.json`): the last one whose not_before has come
    signs, every one verifies. "EdDSA" rather than "Ed25519" in the header, since that is the
    name most verifiers know the signature by (PyJWT, for one, knows no other)."""

    filename = RECEIPT_SIGNING_JWKS
    algorithm = "EdDSA"
    label = "receipt keys"


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime given; receipts state UTC-aware times only")
    return int(moment.timestamp())


def _rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError("naive datetime given; receipts state UTC-aware times only")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def receipt_claims(
    consent: ConsentRead, *, issuer: str, now: datetime, policy_url: str | None = None
) -> dict[str, Any]:
    """The claims of a receipt for `consent`, issued by `issuer` at `now` (module docstring)."""
    receipt_id = str(uuid.uuid4())
    spi = sorted(set(consent.categories) & SENSITIVE_CATEGORIES)
    termination = "withdrawal by the grantor"
    if consent.valid_to is not None:
        termination += f", or at {_rfc3339(consent.valid_to)}"
    claims: dict[str, Any] = {
        "iss": issuer,
        "iat": _epoch(now),
        "jti": receipt_id,
        "version": KANTARA_VERSION,
        "jurisdiction": JURISDICTION,
        "consentTimestamp": _epoch(consent.created_at),
        "collectionMethod": consent.collection.method,
        "consentReceiptID": receipt_id,
        "language": consent.notice.language,
        "piiPrincipalId": str(consent.participant_id),
        "piiControllers": [{"piiController": orgnr} for orgnr in consent.controllers],
        "services": [
            {
                "service": SERVICE,
                "purposes": [
                    {
                        "purpose": purpose,
                        "purposeCategory": [purpose],
                        "consentType": "EXPLICIT",
                        "piiCategory": list(consent.categories),
                        "termination": termination,
                        "thirdPartyDisclosure": True,
                        "thirdPartyName": ", ".join(consent.recipients),
                    }
                    for purpose in consent.purposes
                ],
            }
        ],
        "sensitive": bool(spi),
        "spiCat": spi,
        "consent_id": str(consent.id),
        "status": consent.status,
        "grantor": consent.grantor,
        "grantor_relation": consent.grantor_relation,
        "disclosers": list(consent.disclosers),
        "recipients": list(consent.recipients),
        "valid_from": _rfc3339(consent.valid_from),
        "valid_to": _rfc3339(consent.valid_to),
        "withdrawn_at": _rfc3339(consent.withdrawn_at),
        "notice": {
            "version": consent.notice.version,
            "hash": consent.notice.hash,
            "language": consent.notice.language,
        },
        # The evidence's text and the staff member who recorded it stay out: free text may
        # name people, and the organisation is what answers for the record.
        "collected_by": consent.collection.collected_by_orgnr,
        "request_id": None if consent.request_id is None else str(consent.request_id),
    }
    if policy_url is not None:
        claims["policyUrl"] = policy_url
    return claims


def sign_receipt(keys: ReceiptKeys, claims: dict[str, Any]) -> str:
    """The receipt as a compact JWS by the current receipt key.

    Refuses (SigningKeyError) when that key is not valid at the receipt's `iat`: such a
    receipt would never verify, so the keys need rotating."""
    signed_at = datetime.fromtimestamp(claims["iat"], UTC)
    signer = keys.signer_at(signed_at)
    if not signer.valid_at(signed_at):
        raise SigningKeyError(
            f"receipt key {signer.kid} is not valid at {_rfc3339(signed_at)}: append a "
            f"new key to {RECEIPT_SIGNING_JWKS} (`broen admin keys rotate receipt-signing`)"
        )
    payload = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return keys.sign(payload.encode(), typ=RECEIPT_TYPE, at=signed_at)


def verify_receipt(keys: ReceiptKeys, token: str) -> dict[str, Any]:
    """The claims a receipt signs, or InvalidReceipt saying what is wrong: an unknown kid,
    another typ or alg, a bad signature, or an `iat` outside the validity of its key."""
    try:
        verified = keys.verify(token, typ=RECEIPT_TYPE)
    except InvalidSignature as problem:
        raise InvalidReceipt(str(problem)) from None
    try:
        claims = json.loads(verified.payload)
    except ValueError:
        claims = None
    if (
        not isinstance(claims, dict)
        or type(claims.get("iat")) is not int
        or claims.get("version") != KANTARA_VERSION
    ):
        raise InvalidReceipt("the signed payload is not a consent receipt")
    try:
        verified.check_signed_at(datetime.fromtimestamp(claims["iat"], UTC))
    except InvalidSignature as problem:
        raise InvalidReceipt(str(problem)) from None
    return claims
