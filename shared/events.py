"""The CloudEvents 1.0 envelope every domain event travels in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPE_PREFIX = "no.broen."


class CloudEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    specversion: str = "1.0"
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)


def make_event(source: str, type: str, *, subject: str | None, data: dict[str, Any]) -> CloudEvent:
    """`type` is the short name (`participant.registered`); the envelope carries the full one."""
    return CloudEvent(source=source, type=EVENT_TYPE_PREFIX + type, subject=subject, data=data)
