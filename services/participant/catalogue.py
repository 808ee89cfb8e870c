"""The event catalogue: the timeline's event types, the agency types that may record each,
and every payload field's type and data category, so the policy can project events.

It is data (DOMAIN.md: rules are configurable and versioned): `event_catalogue.toml` ships
with the service and `BROEN_PARTICIPANT_CATALOGUE_PATH` points a deployment at its own.
It is checked when the app is built; one that does not validate stops the start.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from services.participant.schemas import EventTypeName
from shared.documents import invalid, read_toml
from shared.problems import ValidationProblem, validation_errors
from shared.vocabulary import AgencyType, Category

SHIPPED_CATALOGUE = Path(__file__).with_name("event_catalogue.toml")
DEFAULT_MAX_LENGTH = 200

FieldType = Literal["string", "integer", "number", "boolean", "date", "datetime", "uuid", "enum"]
FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
EnumValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,60}$")]

# Event types the service acts on besides storing them (a `veileder.tildelt` moves the
# `veileder` assignment). A catalogue that declares one must declare these fields so.
ACTED_ON: dict[str, dict[str, FieldType]] = {
    "veileder.tildelt": {"staff_id": "uuid", "unit_id": "uuid", "valid_from": "datetime"},
}

# What a wrong value is told: fixed words per type, never the value.
_EXPECTED: dict[str, str] = {
    "integer": "must be an integer",
    "number": "must be a number",
    "boolean": "must be true or false",
    "date": "must be a date (YYYY-MM-DD)",
    "datetime": "must be a date and time with offset (RFC 3339)",
    "uuid": "must be a UUID",
}


class PayloadField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: FieldType
    category: Category = Field(description="The data category; it decides who may see it.")
    required: bool = False
    description: str | None = None
    values: tuple[EnumValue, ...] | None = Field(None, description="The allowed values (enum).")
    max_length: int | None = Field(None, ge=1, le=4000, description="Strings only.")

    @model_validator(mode="before")
    @classmethod
    def _strings_are_bounded(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") == "string" and "max_length" not in data:
            return {**data, "max_length": DEFAULT_MAX_LENGTH}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PayloadField:
        if self.type == "enum":
            if not self.values:
                raise ValueError("an enum field needs a non-empty `values` list")
            if len(set(self.values)) != len(self.values):
                raise ValueError("`values` lists a value twice")
        elif self.values is not None:
            raise ValueError("`values` belongs to enum fields only")
        if self.type != "string" and self.max_length is not None:
            raise ValueError("`max_length` belongs to string fields only")
        return self

    @cached_property
    def _adapter(self) -> TypeAdapter[Any]:
        python_type: Any
        match self.type:
            case "string":
                python_type = Annotated[
                    str, StringConstraints(min_length=1, max_length=self.max_length)
                ]
            case "integer":
                python_type = int
            case "number":
                python_type = float
            case "boolean":
                python_type = bool
            case "date":
                python_type = date
            case "datetime":
                python_type = AwareDatetime
            case "uuid":
                python_type = uuid.UUID
            case "enum":
                python_type = Literal[self.values]
        # Strict JSON: no "1" for an integer, no timestamp for a date.
        return TypeAdapter(python_type, config=ConfigDict(strict=True))

    @property
    def expected(self) -> str:
        if self.type == "string":
            return f"must be a non-empty string of at most {self.max_length} characters"
        if self.type == "enum":
            return "must be one of: " + ", ".join(self.values or ())
        return _EXPECTED[self.type]

    def parse(self, value: Any) -> Any:
        """The value as its Python type; raises ValueError (without the value) if it is not."""
        try:
            return self._adapter.validate_json(json.dumps(value))
        except ValidationError:
            raise ValueError(self.expected) from None


class EventTypeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1)
    owners: tuple[AgencyType, ...] = Field(
        min_length=1, description="The agency types that may record this event."
    )
    payload: dict[FieldName, PayloadField] = Field(default_factory=dict)
    one_of: tuple[tuple[FieldName, ...], ...] = Field(
        (), description="Groups of fields of which exactly one must be given."
    )

    @model_validator(mode="after")
    def _groups_name_optional_fields(self) -> EventTypeSpec:
        for group in self.one_of:
            if len(group) < 2:
                raise ValueError("a `one_of` group names at least two fields")
            for name in group:
                declared = self.payload.get(name)
                if declared is None:
                    raise ValueError(f"`one_of` names '{name}', which the payload does not declare")
                if declared.required:
                    raise ValueError(f"`one_of` names '{name}', which is required anyway")
        return self

    def check_payload(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The payload's values as their Python types. A payload that does not match the
        declaration is a 422 problem naming every offending field, never a value."""
        errors: list[dict[str, Any]] = []

        def refuse(name: str, message: str, code: str) -> None:
            errors.append({"loc": ("body", "payload", name), "msg": message, "type": code})

        for name in sorted(set(payload) - set(self.payload)):
            refuse(name, "not a field of this event type", "extra_forbidden")
        values: dict[str, Any] = {}
        for name, field in self.payload.items():
            value = payload.get(name)
            if value is None:
                if field.required:
                    refuse(name, "required", "missing")
                continue
            try:
                values[name] = field.parse(value)
            except ValueError as error:
                refuse(name, str(error), "invalid_type")
        for group in self.one_of:
            if sum(payload.get(name) is not None for name in group) != 1:
                for name in group:
                    refuse(name, "give exactly one of " + ", ".join(group), "one_of")
        if errors:
            raise ValidationProblem(
                "The payload does not match what the event type declares.",
                errors=validation_errors(errors),
            )
        return values


class EventCatalogue(BaseModel):
    """The registered event types (GET /api/v1/event-types): no personal data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1, description="Raised whenever the catalogue changes.")
    types: dict[EventTypeName, EventTypeSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _acted_on_types_declare_their_fields(self) -> EventCatalogue:
        for type_name, fields in ACTED_ON.items():
            spec = self.types.get(type_name)
            if spec is None:
                continue
            for name, field_type in fields.items():
                declared = spec.payload.get(name)
                if declared is None or declared.type != field_type:
                    raise ValueError(
                        f"'{type_name}' must declare the payload field '{name}' "
                        f"of type {field_type}: the service acts on it"
                    )
        return self


def load_catalogue(path: Path) -> EventCatalogue:
    """The catalogue at `path`, or a ConfigurationError that says what is wrong with it."""
    raw = read_toml(path, "the event catalogue")
    try:
        return EventCatalogue.model_validate(raw)
    except ValidationError as error:
        raise invalid("the event catalogue", str(path), error) from None
