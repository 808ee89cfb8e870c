"""`broen admin legal-basis ...`: the legal-basis registry, the platform operator's alone.

No organisation's token reaches it (API.md: `admin` is never an organisation's scope); the
operator runs these against the consent service's database, and every change is kept in
the registry's trail with the operator named."""

from __future__ import annotations

import asyncio
import getpass
from datetime import datetime
from typing import Any

import typer
from pydantic import TypeAdapter, ValidationError

from broen_cli.common import JsonOption, emit, fail, settings_for
from services.consent import service, store
from services.consent.schemas import LegalBasisRead, LegalBasisWrite, LegalRef
from shared.db import make_engine, make_sessionmaker

legal_app = typer.Typer(help="The legal-basis registry.", no_args_is_help=True)


async def _in_session(work: Any) -> Any:
    engine = make_engine(settings_for("consent").database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


@legal_app.command("set")
def set_legal_basis(
    ref: str = typer.Argument(..., help="The reference a policy's legal:<ref> flow names."),
    title: str = typer.Option(..., "--title"),
    citation: str = typer.Option(..., "--citation", help="The provision's text or citation."),
    valid_from: datetime = typer.Option(..., "--valid-from", help="ISO 8601 with offset."),
    valid_to: datetime = typer.Option(None, "--valid-to"),
    operator: str = typer.Option(None, "--operator", help="Who changes it (default: $USER)."),
    as_json: bool = JsonOption,
) -> None:
    """Register a legal basis, or change one (the policy's flow must also be enabled)."""
    try:
        TypeAdapter(LegalRef).validate_python(ref)
        data = LegalBasisWrite(
            title=title, citation=citation, valid_from=valid_from, valid_to=valid_to
        )
    except ValidationError as error:
        fail(f"not a valid legal basis: {error.errors()[0]['msg']}")
    by = operator or getpass.getuser()
    basis: LegalBasisRead = asyncio.run(
        _in_session(lambda session: service.register_legal_basis(session, ref, data, operator=by))
    )
    emit(as_json, basis.model_dump(mode="json"), f"legal basis {ref} registered by {by}")


@legal_app.command("list")
def list_legal_bases(as_json: bool = JsonOption) -> None:
    """Every registered legal basis and its validity."""

    async def work(session: Any) -> list[LegalBasisRead]:
        return [
            LegalBasisRead.model_validate(b, from_attributes=True)
            for b in await store.legal_bases(session)
        ]

    bases: list[LegalBasisRead] = asyncio.run(_in_session(work))
    lines = []
    for basis in bases:
        until = f"{basis.valid_to:%Y-%m-%d}" if basis.valid_to else ""
        lines.append(f"{basis.ref}  {basis.valid_from:%Y-%m-%d}..{until}  {basis.title}")
    emit(
        as_json,
        {"items": [b.model_dump(mode="json") for b in bases]},
        "\n".join(lines) or "no legal bases registered",
    )
