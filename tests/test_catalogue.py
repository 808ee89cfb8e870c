"""The event catalogue: the shipped one validates, a broken one stops the start."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from services.participant.app import create_app
from services.participant.catalogue import SHIPPED_CATALOGUE, load_catalogue
from services.participant.settings import ParticipantSettings
from shared.problems import ValidationProblem
from shared.settings import ConfigurationError
from shared.vocabulary import CATEGORIES

# DOMAIN.md, "The participant and their lifecycle".
DOMAIN_EVENTS = {
    "kartlegging",
    "soknad",
    "inntak.vedtak",
    "realkompetansevurdering",
    "opplaering.startet",
    "modul.fullfort",
    "norskprove.resultat",
    "forberedende_ar.fullfort",
    "overgang.vg1",
    "fravaer.registrert",
    "frafall.risiko",
    "permisjon",
    "avbrudd",
    "laerekontrakt.signert",
    "fagprove",
    "fagbrev",
    "veileder.tildelt",
    "tiltak.startet",
    "tiltak.forlenget",
    "oppfolging.avsluttet",
    "8_uker_utenfor",
    "arbeid",
    "utdanning",
    "utenfor",
}

VALID = """
version = 1

[types."frafall.risiko"]
description = "A dropout-risk signal."
owners = ["fylkeskommune"]
[types."frafall.risiko".payload]
level = { type = "enum", values = ["lav", "hoy"], required = true, category = "risk" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalogue.toml"
    path.write_text(text)
    return path


def test_the_shipped_catalogue_validates_and_holds_every_domain_event() -> None:
    catalogue = load_catalogue(SHIPPED_CATALOGUE)

    assert set(catalogue.types) >= DOMAIN_EVENTS
    fields = [f for spec in catalogue.types.values() for f in spec.payload.values()]
    assert {f.category for f in fields} <= set(CATEGORIES)
    assert catalogue.types["fravaer.registrert"].owners == ("skole", "fylkeskommune")
    assert {f.category for f in catalogue.types["fravaer.registrert"].payload.values()} == {
        "attendance"
    }
    assert {f.category for f in catalogue.types["frafall.risiko"].payload.values()} == {"risk"}
    assert {f.category for f in catalogue.types["tiltak.startet"].payload.values()} == {
        "nav.measure"
    }
    assert catalogue.types["veileder.tildelt"].owners == ("nav",)


def test_the_shipped_catalogue_is_the_default_and_ships_with_the_package() -> None:
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())

    assert ParticipantSettings().catalogue_path == SHIPPED_CATALOGUE
    assert "*.toml" in pyproject["tool"]["setuptools"]["package-data"]["*"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (('category = "risk"', 'category = "mood"'), "types.frafall.risiko.payload.level.category"),
        (('owners = ["fylkeskommune"]', 'owners = ["bank"]'), "types.frafall.risiko.owners.0"),
        (('values = ["lav", "hoy"], ', ""), "an enum field needs a non-empty `values` list"),
        (('type = "enum"', 'type = "text"'), "types.frafall.risiko.payload.level.type"),
        (("version = 1", ""), "version"),
    ],
)
def test_a_broken_catalogue_is_refused_with_a_clear_reason(
    tmp_path: Path, change: tuple[str, str], named: str
) -> None:
    path = write(tmp_path, VALID.replace(*change))

    with pytest.raises(ConfigurationError) as refused:
        load_catalogue(path)

    assert str(path) in str(refused.value)
    assert named in str(refused.value)


def test_the_offending_value_is_named_for_the_catalogue_author(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace('category = "risk"', 'category = "mood"'))

    with pytest.raises(ConfigurationError, match="got 'mood'"):
        load_catalogue(path)


def test_a_catalogue_that_is_not_toml_or_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_catalogue(write(tmp_path, "version = "))
    with pytest.raises(ConfigurationError, match="cannot read the event catalogue"):
        load_catalogue(tmp_path / "missing.toml")


def test_a_veileder_tildelt_without_the_fields_the_service_acts_on_is_refused(
    tmp_path: Path,
) -> None:
    text = """
version = 1
[types."veileder.tildelt"]
description = "A veileder assigned."
owners = ["nav"]
[types."veileder.tildelt".payload]
staff_id = { type = "string", category = "nav.followup" }
"""
    with pytest.raises(ConfigurationError, match="'veileder.tildelt' must declare"):
        load_catalogue(write(tmp_path, text))


def test_the_app_does_not_start_with_a_broken_catalogue(tmp_path: Path, keys_dir: Path) -> None:
    path = write(tmp_path, VALID.replace('category = "risk"', 'category = "mood"'))
    settings = ParticipantSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/p.db", keys_dir=keys_dir, catalogue_path=path
    )

    with pytest.raises(ConfigurationError, match="event catalogue"):
        create_app(settings)


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, ["payload.level"]),
        ({"level": "hoy", "mood": "sad"}, ["payload.mood"]),
        ({"level": "Hemmelig verdi"}, ["payload.level"]),
        ({"level": 3}, ["payload.level"]),
    ],
)
def test_a_payload_that_does_not_match_names_the_fields_and_never_the_values(
    tmp_path: Path, payload: dict[str, Any], fields: list[str]
) -> None:
    spec = load_catalogue(write(tmp_path, VALID)).types["frafall.risiko"]

    with pytest.raises(ValidationProblem) as refused:
        spec.check_payload(payload)

    errors = refused.value.extensions["errors"]
    assert [e["field"] for e in errors] == fields
    assert "Hemmelig" not in str(refused.value.body())
    assert "sad" not in str(refused.value.body())


def test_payload_values_are_checked_strictly_by_type() -> None:
    catalogue = load_catalogue(SHIPPED_CATALOGUE)
    absence = catalogue.types["fravaer.registrert"]

    values = absence.check_payload(
        {"period_start": "2026-09-01", "period_end": "2026-09-30", "days": 3, "absence_percent": 7}
    )
    with pytest.raises(ValidationProblem) as refused:
        absence.check_payload(
            {"period_start": 1756684800, "period_end": "2026-09-30", "days": "3"}
        )

    assert str(values["period_start"]) == "2026-09-01"
    assert [e["field"] for e in refused.value.extensions["errors"]] == [
        "payload.period_start",
        "payload.days",
    ]


def test_exactly_one_of_a_group_must_be_given() -> None:
    assign = load_catalogue(SHIPPED_CATALOGUE).types["veileder.tildelt"]
    some_id = "0b8a4f5e-7c1d-4d55-9a43-1f2a3b4c5d6e"

    assert assign.check_payload({"unit_id": some_id})
    for payload in ({}, {"unit_id": some_id, "staff_id": some_id}):
        with pytest.raises(ValidationProblem):
            assign.check_payload(payload)
