"""The web app's two secrets, in the key directory beside the components' keys: its client
key (private_key_jwt at the gateway) and the key that signs session cookies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from joserfc.jwk import OKPKey

from shared.keys import new_signing_key, new_symmetric_key, read_json, write_secret_json

CLIENT_KEY_FILE = "web-client.private.jwk.json"
SESSION_KEY_FILE = "web-session.json"


def init_web_keys(keys_dir: Path) -> list[str]:
    """Create whichever of the two is missing; never overwrite one."""
    written = []
    client = keys_dir / CLIENT_KEY_FILE
    if not client.exists():
        write_secret_json(client, new_signing_key("web").as_dict(private=True))
        written.append(client.name)
    session = keys_dir / SESSION_KEY_FILE
    if not session.exists():
        write_secret_json(session, {"key": new_symmetric_key()})
        written.append(session.name)
    return written


def client_public_jwks(keys_dir: Path) -> dict[str, Any]:
    """What an organisation registers for the web app's client (`broen admin client add`)."""
    key = OKPKey.import_key(json.loads((keys_dir / CLIENT_KEY_FILE).read_text()))
    return {"keys": [key.as_dict(private=False)]}


def session_secret(keys_dir: Path, name: str = SESSION_KEY_FILE) -> str:
    secret = read_json(keys_dir, name).get("key")
    if not isinstance(secret, str) or len(secret) < 32:
        raise ValueError(f"{name} holds no session key")
    return secret
