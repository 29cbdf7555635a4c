"""The audit log (events), webhook subscriptions and their deliveries."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from assetd.db.base import Base, IDModel, TenantOwned, TimestampedModel, utcnow


class EventType(enum.StrEnum):
    asset_created = "asset.created"
    asset_updated = "asset.updated"
    asset_trashed = "asset.trashed"
    asset_restored = "asset.restored"
    asset_purged = "asset.purged"
    version_added = "version.added"
    key_created = "key.created"
    key_revoked = "key.revoked"
    package_installed = "package.installed"
    collection_created = "collection.created"
    collection_updated = "collection.updated"
    collection_deleted = "collection.deleted"
    collection_assets_added = "collection.assets_added"
    collection_asset_removed = "collection.asset_removed"


class Event(IDModel, TimestampedModel, TenantOwned, Base):
    __tablename__ = "events"
    __table_args__ = (
        # GET /v1/events: newest first, and filtered by type.
        sa.Index("ix_events_tenant_created", "tenant_id", "created_at", "id"),
        sa.Index("ix_events_tenant_type_created", "tenant_id", "type", "created_at"),
    )

    type: Mapped[str] = mapped_column(sa.String(64))
    actor: Mapped[str] = mapped_column(sa.String(300))
    # No foreign keys: the log outlives what it talks about (a purged asset, a deleted key).
    asset_id: Mapped[str | None] = mapped_column(sa.String(24), default=None)
    version_number: Mapped[int | None] = mapped_column(default=None)
    key_id: Mapped[str | None] = mapped_column(sa.String(24), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WebhookSubscription(IDModel, TimestampedModel, TenantOwned, Base):
    __tablename__ = "webhook_subscriptions"

    url: Mapped[str] = mapped_column(sa.String(2048))
    # Event types, or ["*"] for all of them.
    event_types: Mapped[list[str]] = mapped_column(default=list)
    # HMAC key of the signature header; shown once, when the subscription is created.
    secret: Mapped[str] = mapped_column(sa.String(64))
    is_active: Mapped[bool] = mapped_column(default=True)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliveryState(enum.StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class WebhookDelivery(IDModel, TimestampedModel, TenantOwned, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.Index("ix_webhook_deliveries_subscription", "subscription_id", "created_at"),
    )

    subscription_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("events.id", ondelete="CASCADE")
    )
    # The job that delivers it (a job of kind "webhook"); its id is the delivery's handle.
    job_id: Mapped[str | None] = mapped_column(sa.String(24), default=None, unique=True)
    state: Mapped[DeliveryState] = mapped_column(
        sa.Enum(DeliveryState, native_enum=False, length=16, validate_strings=True),
        default=DeliveryState.pending,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    status_code: Mapped[int | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
