"""Event and webhook shapes of the native API; a webhook's secret comes out once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from assetd.events.models import DeliveryState
from assetd.tenants.schemas import CamelModel, InputModel

# Every event type once, plus room for nothing else: longer lists are refused outright.
MAX_EVENT_TYPES = 16
EventTypeName = Annotated[str, Field(min_length=1, max_length=64)]


class EventRead(CamelModel):
    id: str
    type: str
    actor: str
    asset_id: str | None
    version_number: int | None
    key_id: str | None
    details: dict[str, Any]
    created_at: datetime


class EventPage(CamelModel):
    items: list[EventRead]
    page_size: int
    next_cursor: str | None = None


class WebhookCreate(InputModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048, description="http:// or https:// receiver.")
    event_types: list[EventTypeName] = Field(
        min_length=1,
        max_length=MAX_EVENT_TYPES,
        description='Event types to deliver, or ["*"] for all.',
    )
    is_active: bool = True


class WebhookUpdate(InputModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, min_length=1, max_length=2048)
    event_types: list[EventTypeName] | None = Field(None, min_length=1, max_length=MAX_EVENT_TYPES)
    is_active: bool | None = None


class WebhookRead(CamelModel):
    id: str
    url: str
    event_types: list[str]
    is_active: bool
    created_at: datetime
    modified_at: datetime


class WebhookCreated(WebhookRead):
    secret: str = Field(description="HMAC-SHA256 key of X-Assetd-Signature; shown only now.")


class WebhookDeliveryRead(CamelModel):
    id: str
    event_id: str
    state: DeliveryState
    attempts: int
    status_code: int | None
    error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None
