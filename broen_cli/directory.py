"""`broen admin org|unit|staff ...`: the directory lives in the participant service's database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from broen_cli.common import JsonOption, emit, fail, settings_for
from services.participant import directory, store
from services.participant.schemas import (
    OrganisationCreate,
    OrganisationRead,
    StaffCreate,
    UnitCreate,
)
from shared.db import make_engine, make_sessionmaker
from shared.problems import Problem

T = TypeVar("T")
Model = TypeVar("Model", bound=BaseModel)

org_app = typer.Typer(
    help="Organisations (NAV offices, counties, schools, ...).", no_args_is_help=True
)
unit_app = typer.Typer(help="Units of an organisation and their inboxes.", no_args_is_help=True)
staff_app = typer.Typer(help="Staff members and their roles.", no_args_is_help=True)


def in_directory(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction on the participant service's database."""

    async def run() -> T:
        engine = make_engine(settings_for("participant").database_url)
        try:
            async with make_sessionmaker(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except Problem as problem:
        fail(problem.detail)


def parsed(model: type[Model], **values: Any) -> Model:
    """The command's options as a wire model, or a clean refusal naming what is wrong."""
    try:
        return model.model_validate(values)
    except ValidationError as error:
        fail(
            "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
                for e in error.errors()
            )
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


def lookup_agency_type(orgnr: str) -> str | None:
    """The agency type of a registered organisation, or None if it is not registered."""

    async def find(session: AsyncSession) -> str | None:
        found = await store.get_organisation(session, orgnr)
        return found.agency_type if found else None

    return in_directory(find)


OrgOption = typer.Option(..., "--org", help="Organisasjonsnummer (9 digits).")


@org_app.command("add")
def add_org(
    orgnr: str = typer.Option(..., "--orgnr", help="Organisasjonsnummer (9 digits)."),
    name: str = typer.Option(..., "--name"),
    agency_type: str = typer.Option(..., "--agency-type", help="nav, fylkeskommune, skole, ..."),
    county: str | None = typer.Option(None, "--county"),
    as_json: bool = JsonOption,
) -> None:
    """Register an organisation."""
    data = parsed(
        OrganisationCreate, orgnr=orgnr, name=name, agency_type=agency_type, county=county
    )
    added = asyncio.run(add_organisation(data))
    if added is None:
        fail(f"organisation {data.orgnr} is already registered")
    emit(
        as_json, added.model_dump(), f"registered {added.orgnr} {added.name} ({added.agency_type})"
    )


@unit_app.command("add")
def add_unit(
    orgnr: str = OrgOption,
    name: str = typer.Option(..., "--name"),
    kind: str = typer.Option(..., "--kind", help="e.g. nav_kontor, nav_tiltak, skole, ot"),
    as_json: bool = JsonOption,
) -> None:
    """Add a unit to an organisation; prints its id."""
    data = parsed(UnitCreate, orgnr=orgnr, name=name, kind=kind)
    unit = in_directory(lambda session: directory.add_unit(session, data))
    emit(as_json, unit.model_dump(mode="json"), str(unit.id))


@staff_app.command("add")
def add_staff(
    orgnr: str = OrgOption,
    unit_id: str = typer.Option(..., "--unit", help="The unit's id."),
    name: str = typer.Option(..., "--name"),
    roles: list[str] = typer.Option(..., "--role", help="Repeat for several roles."),
    skjermet_authorised: bool = typer.Option(
        False, "--skjermet-authorised", help="May see participants who are skjermet."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Add a staff member with their roles; prints the new id."""
    data = parsed(
        StaffCreate,
        orgnr=orgnr,
        unit_id=unit_id,
        name=name,
        roles=roles,
        skjermet_authorised=skjermet_authorised,
    )
    staff = in_directory(lambda session: directory.add_staff(session, data))
    emit(as_json, staff.model_dump(mode="json"), str(staff.id))
