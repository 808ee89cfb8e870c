"""Cursor pagination (API.md): `?limit=` (default 50, max 500) and an opaque `?cursor=`.

A cursor is the sort key of the last item returned, base64url-encoded, so the next page
continues after it even when rows are added meanwhile."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query

from shared.problems import ValidationProblem

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[str | None, Query(max_length=500, description="From `next_cursor`.")]


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except ValueError:
        raise ValidationProblem("The cursor is not one this API gave out.") from None
    if not isinstance(key, list) or len(key) != arity:
        raise ValidationProblem("The cursor is not one this API gave out.")
    return key


def moment_after(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (moment, id) a keyset page continues after, from a cursor `next_cursor` made."""
    if cursor is None:
        return None
    moment, row_id = decode_cursor(cursor, 2)
    try:
        return datetime.fromisoformat(moment), uuid.UUID(row_id)
    except (TypeError, ValueError):
        raise ValidationProblem("The cursor is not one this API gave out.") from None


def next_cursor(items: Sequence[Any], limit: int, moment: str) -> str | None:
    """Where the next page starts: the last item's (moment, id), or None at the end."""
    if len(items) < limit:
        return None
    last = items[-1]
    return encode_cursor(getattr(last, moment).isoformat(), str(last.id))


def page_params(limit: int, cursor: str | None) -> dict[str, str]:
    """`limit` and `cursor` as query parameters for the next hop (a service behind the gateway)."""
    return {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
