from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from assetd.db.base import Base, IDModel, TenantOwned, TimestampedModel, utcnow


class AssetKind(enum.StrEnum):
    BLOB = "BLOB"
    LINK = "LINK"


class AssetType(enum.StrEnum):
    image = "image"
    document = "document"
    video = "video"
    audio = "audio"
    app = "app"
    book = "book"
    script = "script"
    certificate = "certificate"
    package = "package"
    other = "other"


class Access(enum.StrEnum):
    PUBLIC = "PUBLIC"
    PRIVATE = "PRIVATE"


class AssetState(enum.StrEnum):
    pending = "pending"
    active = "active"
    trashed = "trashed"


# jsonb on PostgreSQL for the columns the query language filters on: the planner estimates
# containment (@>) from statistics, and reading jsonb skips json's per-row parse. Only for
# values that come through the NUL-refusing input models: jsonb cannot hold "\u0000".
_QUERIED_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _enum(cls: type[enum.StrEnum]) -> sa.Enum:
    # Stored as plain strings: portable, and new members need no ALTER TYPE.
    return sa.Enum(cls, native_enum=False, length=16, validate_strings=True)


class Blob(IDModel, TimestampedModel, TenantOwned, Base):
    """Bytes stored once per tenant, addressed by SHA-256, counted by the versions using them."""

    __tablename__ = "blobs"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "sha256", name="uq_blobs_tenant_sha256"),)

    sha256: Mapped[str] = mapped_column(sa.String(64))
    md5: Mapped[str] = mapped_column(sa.String(32))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    refcount: Mapped[int] = mapped_column(default=0)
    # When refcount last reached zero; gc deletes the bytes a grace period later.
    released_at: Mapped[datetime | None] = mapped_column(default=None)


class Asset(IDModel, TenantOwned, Base):
    __tablename__ = "assets"
    __table_args__ = (
        # The list queries: newest first, by name, by modification, within the visible state.
        sa.Index("ix_assets_tenant_state_created", "tenant_id", "state", "created_at", "id"),
        sa.Index("ix_assets_tenant_state_name", "tenant_id", "state", "name", "id"),
        sa.Index("ix_assets_tenant_state_modified", "tenant_id", "state", "modified_at", "id"),
        sa.Index("ix_assets_tenant_state_type", "tenant_id", "state", "type", "created_at", "id"),
        sa.Index("ix_assets_tenant_state_size", "tenant_id", "state", "size_bytes", "id"),
    )

    kind: Mapped[AssetKind] = mapped_column(_enum(AssetKind))
    type: Mapped[AssetType] = mapped_column(_enum(AssetType))
    access: Mapped[Access] = mapped_column(_enum(Access))
    state: Mapped[AssetState] = mapped_column(_enum(AssetState))
    name: Mapped[str] = mapped_column(sa.String(500), default="")
    description: Mapped[str] = mapped_column(sa.Text, default="")
    tags: Mapped[list[str]] = mapped_column(_QUERIED_JSON, default=list)
    ref_ids: Mapped[list[dict[str, str]]] = mapped_column(_QUERIED_JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", _QUERIED_JSON, default=dict)
    # When set, `meta` has been validated against this template (assetd.templates).
    metadata_template_id: Mapped[str | None] = mapped_column(
        sa.String(36), sa.ForeignKey("metadata_templates.id"), default=None, index=True
    )
    # A copy of the asset's rows in asset_security_templates, kept in step by the service, so
    # that reading an asset costs no extra query and one without templates needs no access
    # check; the checks themselves run on the table, in SQL.
    security_template_ids: Mapped[list[str]] = mapped_column(
        default=list, server_default=sa.text("'[]'")
    )
    segment_id: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    url: Mapped[str | None] = mapped_column(sa.String(4000), default=None)
    revision: Mapped[int] = mapped_column(default=1)
    current_version_id: Mapped[str | None] = mapped_column(sa.String(24), default=None)
    # Copies of the current version's facts, so that filters and sorts on them use an index
    # instead of a join (DESIGN invariant 4).
    version_number: Mapped[int | None] = mapped_column(default=None)
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    mime_type: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    filename: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    extension: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    sha256: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    # The current version's extracted facts, for `facts.*` in queries without a join. Still
    # json on PostgreSQL: facts are strings read from uploaded files, which may hold a NUL.
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=sa.text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_by: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    trashed_at: Mapped[datetime | None] = mapped_column(default=None)


class Version(IDModel, TimestampedModel, TenantOwned, Base):
    """Immutable content of an asset."""

    __tablename__ = "versions"
    __table_args__ = (sa.UniqueConstraint("asset_id", "number", name="uq_versions_asset_number"),)

    asset_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("assets.id", ondelete="CASCADE")
    )
    number: Mapped[int]
    blob_id: Mapped[str] = mapped_column(sa.String(24), sa.ForeignKey("blobs.id"), index=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    md5: Mapped[str] = mapped_column(sa.String(32))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    mime_type: Mapped[str] = mapped_column(sa.String(255))
    original_name: Mapped[str] = mapped_column(sa.String(500), default="")
    extension: Mapped[str] = mapped_column(sa.String(32), default="")
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Virus scan (when clamd is configured): pending until scanned; infected versions are
    # quarantined, never served. None: not scanned (scanning off when it was made).
    scan_status: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    scan_result: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    created_by: Mapped[str | None] = mapped_column(sa.String(200), default=None)
