"""`broen admin client ...`: register systems as OAuth2 clients and make their keys."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import typer
from joserfc.jwk import ECKey, KeyParameters, OKPKey, RSAKey
from sqlalchemy.exc import SQLAlchemyError

from broen_cli.common import JsonOption, emit, fail
from gateway.oauth import register_client, validate_client_jwks
from gateway.settings import GatewaySettings
from shared.keys import write_secret_json
from shared.problems import Problem

client_app = typer.Typer(help="API clients (systems) and their keys.", no_args_is_help=True)

KEYGEN_ALGORITHMS = ("Ed25519", "RS256", "ES256")


@client_app.command("add")
def add(
    client_id: str = typer.Option(..., "--client-id", help="The client id the system will use."),
    orgnr: str = typer.Option(..., "--org", help="Organisasjonsnummer of the client's owner."),
    scope: str = typer.Option(..., "--scope", help='Space-separated scopes, e.g. "a b".'),
    jwks_file: Path = typer.Option(..., "--jwks-file", help="The client's public JWKS."),
    agency_type: str | None = typer.Option(
        None, "--agency-type", help="Only if the organisation is not registered in Broen."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Register a system as an OAuth2 client of an organisation."""
    jwks = _read_jwks(jwks_file)
    try:
        validate_client_jwks(jwks)
    except Problem as problem:
        fail(problem.detail)
    agency_type = agency_type or _registered_agency_type(orgnr)
    try:
        client = asyncio.run(
            register_client(
                GatewaySettings(),
                client_id=client_id,
                orgnr=orgnr,
                agency_type=agency_type,
                scopes=scope,
                jwks=jwks,
            )
        )
    except Problem as problem:
        fail(problem.detail)
    except (SQLAlchemyError, OSError) as error:
        # The driver's message may quote connection details; the type is enough to act on.
        fail(f"could not write to the gateway database ({type(error).__name__}); is it migrated?")
    text = (
        f"registered client {client['client_id']} for {client['orgnr']} "
        f"({client['agency_type']}): {' '.join(client['scopes'])}"
    )
    emit(as_json, client, text)


@client_app.command("keygen")
def keygen(
    out: Path | None = typer.Option(
        None, "--out", help="Private key file (default ./<kid>.private.jwk.json)."
    ),
    alg: str = typer.Option("Ed25519", "--alg", help="Ed25519, RS256 or ES256."),
    as_json: bool = JsonOption,
) -> None:
    """Make a signing key for a client: the private JWK to a file, the public JWKS to stdout."""
    if alg not in KEYGEN_ALGORITHMS:
        fail(f"--alg must be one of {', '.join(KEYGEN_ALGORITHMS)}")
    key = _generate_key(alg)
    target = out or Path(f"{key.kid}.private.jwk.json")
    try:
        write_secret_json(target, key.as_dict(private=True))
    except FileExistsError:
        fail(f"{target} exists; choose another --out (keys are never overwritten)")
    except OSError as error:
        fail(f"could not write {target}: {error.strerror}")
    jwks = {"keys": [key.as_dict(private=False)]}
    if as_json:
        document = {"kid": key.kid, "alg": alg, "private_key_file": str(target), "jwks": jwks}
        emit(True, document, "")
        return
    typer.echo(f"wrote the private key to {target} (keep it secret); public JWKS:", err=True)
    typer.echo(json.dumps(jwks, indent=2))


def _generate_key(alg: str) -> RSAKey | ECKey | OKPKey:
    parameters: KeyParameters = {"kid": f"{alg.lower()}-{secrets.token_hex(8)}", "use": "sig"}
    if alg == "RS256":
        return RSAKey.generate_key(3072, parameters={**parameters, "alg": alg})
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters={**parameters, "alg": alg})
    # No alg member: the key then verifies both "Ed25519" and the older name "EdDSA".
    return OKPKey.generate_key("Ed25519", parameters=parameters)


def _read_jwks(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        fail(f"{path} does not exist")
    except (OSError, UnicodeDecodeError) as error:
        fail(f"could not read {path}: {getattr(error, 'strerror', None) or type(error).__name__}")
    except json.JSONDecodeError as error:
        fail(f"{path} is not JSON (line {error.lineno}, column {error.colno})")


def _registered_agency_type(orgnr: str) -> str:
    # Imported here so this module does not load the participant service unless needed.
    from broen_cli.directory import lookup_agency_type

    try:
        found = lookup_agency_type(orgnr)
    except (SQLAlchemyError, OSError) as error:
        fail(f"could not look up the organisation ({type(error).__name__})")
    if found is None:
        fail(f"unknown organisation {orgnr}; register it first (`broen admin org add`)")
    return found
