"""Dev mode only: the demo sign-in. It offers the seeded people (`broen dev up` writes who,
`var/demo/web-sign-in.json`), and for participants it stands in for ID-porten: a demo
identity provider whose ID tokens the dev gateway trusts, so the token exchange after it is
the same as in production."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import OKPKey

from shared.keys import new_signing_key, write_secret_json

DEMO_DIR = Path("var/demo")
IDP_KEY = DEMO_DIR / "demo-idp.private.jwk.json"
IDP_JWKS = DEMO_DIR / "demo-idp.jwks.json"
IDP_AUDIENCE = "broen-web"
NATIONAL_ID_CLAIM = "pid"


def idp_issuer(public_url: str) -> str:
    return public_url.rstrip("/") + "/demo-idp"


def gateway_trust(public_url: str) -> list[dict[str, Any]]:
    """BROEN_GATEWAY_CITIZEN_ISSUERS for the dev gateway: the demo identity provider."""
    return [
        {
            "issuer": idp_issuer(public_url),
            "jwks_path": str(IDP_JWKS),
            "audience": IDP_AUDIENCE,
            "national_id_claim": NATIONAL_ID_CLAIM,
            "algorithms": ["EdDSA", "Ed25519"],
        }
    ]


def init_demo_idp() -> None:
    if IDP_KEY.exists() and IDP_JWKS.exists():
        return
    IDP_KEY.unlink(missing_ok=True)
    key = new_signing_key("demo-idp")
    write_secret_json(IDP_KEY, key.as_dict(private=True))
    IDP_JWKS.write_text(json.dumps({"keys": [key.as_dict(private=False)]}, indent=2))


def id_token(public_url: str, national_id: str) -> str:
    """What ID-porten would return after the person signed in (a short-lived ID token)."""
    key = OKPKey.import_key(json.loads(IDP_KEY.read_text()))
    now = int(time.time())
    claims = {
        "iss": idp_issuer(public_url),
        "aud": IDP_AUDIENCE,
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, national_id)),
        NATIONAL_ID_CLAIM: national_id,
        "iat": now,
        "exp": now + 120,
    }
    return jwt.encode({"alg": "Ed25519", "kid": key.kid}, claims, key, algorithms=["Ed25519"])


def people(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Who the demo sign-in offers: staff (id, name, orgnr, roles, unit) and participants
    (name, national id). Empty when `broen dev up` has not written the file."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"staff": [], "participants": []}
    return {"staff": found.get("staff", []), "participants": found.get("participants", [])}
