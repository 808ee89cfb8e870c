"""Configuration documents shipped as TOML and checked with pydantic when a component
starts (the personvern policy, the event catalogue): one way to read them and one way to
say what is wrong, so a bad document stops the start with a message its author can act on."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.settings import ConfigurationError


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The parsed document, or a ConfigurationError naming `what` and the file."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigurationError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigurationError(f"{what} {path} is not valid TOML: {error}") from None


def invalid(what: str, source: str, error: ValidationError) -> ConfigurationError:
    """A ConfigurationError listing every problem with its place in the document. These
    documents hold no personal data, so naming the offending value helps their author."""
    problems = "; ".join(_describe(e) for e in error.errors())
    return ConfigurationError(f"{what} {source} is not valid: {problems}")


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    got = f" (got {value!r})" if isinstance(value, str | int | float | bool) else ""
    return f"{where}: {message}{got}"
