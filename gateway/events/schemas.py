"""Wire models of the changes feed and the subscriptions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.events.projection import PUBLISHED_TYPES

EventType = Literal[PUBLISHED_TYPES]  # type: ignore[valid-type]


class CloudEventOut(BaseModel):
    """A domain event as the reader may see it (CloudEvents 1.0, structured mode). `data`
    holds ids and codes only, with a `withheld` list where fields were decided;
    `sequence` orders the events of the log (the replay range uses it)."""

    specversion: str
    id: str = Field(description="Unique per event, the same on every delivery: deduplicate by it.")
    source: str
    type: str
    subject: str | None = Field(None, description="The participant's id.")
    time: datetime
    datacontenttype: str
    sequence: str
    data: dict[str, Any]


class EventFeed(BaseModel):
    items: list[CloudEventOut]
    next_cursor: str = Field(
        description="Where the next poll continues; never null (at the end it is the end)."
    )


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="https:// on a public address.")
    event_types: list[EventType] = Field(min_length=1, max_length=len(PUBLISHED_TYPES))
    purpose: str = Field(
        max_length=50,
        description="The purpose every delivery is projected for; one your system may declare.",
    )


class SubscriptionRead(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    purpose: str
    status: Literal["active", "disabled"]
    disabled_reason: str | None = None
    created_at: datetime


class SubscriptionCreated(SubscriptionRead):
    secret: str = Field(
        description="The signing secret (whsec_...), shown only now: verify every delivery's "
        "webhook-signature with it (Standard Webhooks)."
    )


class SubscriptionList(BaseModel):
    items: list[SubscriptionRead]
    next_cursor: str | None = None


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_sequence: int = Field(ge=1, description="The first event's `sequence`.")
    to_sequence: int | None = Field(
        None, ge=1, description="The last event's `sequence` (default: the latest)."
    )


class ReplayAnswer(BaseModel):
    scheduled: int = Field(description="Deliveries scheduled; each is projected when sent.")


class DeliveryRead(BaseModel):
    id: int
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "withheld", "dead", "cancelled"]
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_result: str | None
    created_at: datetime


class DeliveryList(BaseModel):
    items: list[DeliveryRead]
    next_cursor: str | None = None
