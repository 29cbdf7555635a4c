"""Packages (uploaded zips and their reports), asset dependencies, and where installed
things came from."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from assetd.db.base import Base, IDModel, TenantOwned, TimestampedModel


class PackageStatus(enum.StrEnum):
    reported = "REPORTED"
    installed = "INSTALLED"


class Package(IDModel, TimestampedModel, TenantOwned, Base):
    """An uploaded package: the zip (the artifact, a blob) and the last report made of it."""

    __tablename__ = "packages"
    __table_args__ = (sa.Index("ix_packages_tenant_created", "tenant_id", "created_at", "id"),)

    name: Mapped[str] = mapped_column(sa.String(200))
    version: Mapped[str] = mapped_column(sa.String(50))
    format_version: Mapped[int]
    description: Mapped[str] = mapped_column(sa.Text, default="")
    filename: Mapped[str] = mapped_column(sa.String(500), default="")
    blob_id: Mapped[str] = mapped_column(sa.String(24), sa.ForeignKey("blobs.id"), index=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[PackageStatus] = mapped_column(
        sa.Enum(PackageStatus, native_enum=False, length=16, validate_strings=True),
        default=PackageStatus.reported,
    )
    # The import report as the API shows it: recomputed on install, since the tenant moves on.
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    installed_at: Mapped[datetime | None] = mapped_column(default=None)
    installed_by: Mapped[str | None] = mapped_column(sa.String(200), default=None)


class AssetDependency(Base):
    """The asset needs `depends_on`: another asset's id, which may not (yet) exist."""

    __tablename__ = "asset_dependencies"
    __table_args__ = (
        # "What depends on this asset", within a tenant; the key serves the other direction.
        sa.Index("ix_asset_dependencies_tenant_target", "tenant_id", "depends_on"),
    )

    tenant_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("tenants.id", ondelete="CASCADE")
    )
    asset_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("assets.id", ondelete="CASCADE"), primary_key=True
    )
    # No foreign key: an unresolved dependency can be installed on purpose, and a purged
    # asset must not silently disappear from what others declare they need.
    depends_on: Mapped[str] = mapped_column(sa.String(200), primary_key=True)


class OriginKind(enum.StrEnum):
    asset = "asset"
    collection = "collection"


class PackageOrigin(Base):
    """A package's id for something, and the tenant's: how a second install finds what the
    first one made, when the package's id could not be kept."""

    __tablename__ = "package_origins"

    tenant_id: Mapped[str] = mapped_column(
        sa.String(24), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[OriginKind] = mapped_column(
        sa.Enum(OriginKind, native_enum=False, length=16, validate_strings=True),
        primary_key=True,
    )
    source_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    target_id: Mapped[str] = mapped_column(sa.String(24))
    package_id: Mapped[str] = mapped_column(sa.String(24))
    # The asset's revision right after the install: a later one means local changes.
    revision: Mapped[int | None] = mapped_column(default=None)
