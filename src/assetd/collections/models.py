"""Collections: named, access-controlled groups of assets (many-to-many)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from assetd.db.base import Base, IDModel, TenantOwned, TimestampedModel, utcnow


class Collection(IDModel, TimestampedModel, TenantOwned, Base):
    __tablename__ = "collections"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_collections_tenant_name"),)

    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    # A copy of the collection_security_templates rows, in the order given: shown as is, and
    # it spares the access query for the (usual) collection without templates.
    security_template_ids: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    created_by: Mapped[str | None] = mapped_column(sa.String(200))
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_by: Mapped[str | None] = mapped_column(sa.String(200))


class CollectionAsset(Base):
    """One asset in one collection."""

    __tablename__ = "collection_assets"
    __table_args__ = (
        # "Which collections hold this asset", within a tenant; the key serves the reverse.
        sa.Index("ix_collection_assets_tenant_asset", "tenant_id", "asset_id"),
    )

    # Not TenantOwned: its single-column tenant index would be redundant with the one above.
    tenant_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("tenants.id", ondelete="CASCADE")
    )
    collection_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    asset_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class CollectionSecurityTemplate(Base):
    """The security templates a collection carries (same rule as for assets)."""

    __tablename__ = "collection_security_templates"
    __table_args__ = (
        sa.Index("ix_collection_security_templates_tenant_template", "tenant_id", "template_id"),
    )

    tenant_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("tenants.id", ondelete="CASCADE")
    )
    collection_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    # No cascade: a template still carried by a collection cannot be deleted (409).
    template_id: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("security_templates.id"), primary_key=True
    )
