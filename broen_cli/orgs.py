"""`broen admin org ...`: organisations live in the participant service's database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import typer
from pydantic import ValidationError

from broen_cli.common import JsonOption, emit, fail, settings_for
from services.participant import store
from services.participant.schemas import OrganisationCreate, OrganisationRead
from shared.db import make_engine, make_sessionmaker

org_app = typer.Typer(
    help="Organisations (NAV offices, counties, schools, ...).", no_args_is_help=True
)


async def add_organisation(data: OrganisationCreate) -> OrganisationRead | None:
    engine = make_engine(settings_for("participant").database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            added = await store.add_organisation(
                session,
                orgnr=data.orgnr,
                name=data.name,
                agency_type=data.agency_type,
                county=data.county,
                now=datetime.now(UTC),
            )
            return OrganisationRead.model_validate(added, from_attributes=True) if added else None
    finally:
        await engine.dispose()


async def _agency_type(orgnr: str) -> str | None:
    engine = make_engine(settings_for("participant").database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            found = await store.get_organisation(session, orgnr)
            return found.agency_type if found else None
    finally:
        await engine.dispose()


def lookup_agency_type(orgnr: str) -> str | None:
    """The agency type of a registered organisation, or None if it is not registered."""
    return asyncio.run(_agency_type(orgnr))


@org_app.command("add")
def add(
    orgnr: str = typer.Option(..., "--orgnr", help="Organisasjonsnummer (9 digits)."),
    name: str = typer.Option(..., "--name"),
    agency_type: str = typer.Option(..., "--agency-type", help="nav, fylkeskommune, skole, ..."),
    county: str | None = typer.Option(None, "--county"),
    as_json: bool = JsonOption,
) -> None:
    """Register an organisation."""
    try:
        data = OrganisationCreate(orgnr=orgnr, name=name, agency_type=agency_type, county=county)
    except ValidationError as error:
        fail(
            "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                for e in error.errors()
            )
        )
    added = asyncio.run(add_organisation(data))
    if added is None:
        fail(f"organisation {data.orgnr} is already registered")
    emit(
        as_json, added.model_dump(), f"registered {added.orgnr} {added.name} ({added.agency_type})"
    )
