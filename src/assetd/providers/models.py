"""A storage provider: where a tenant keeps objects that assetd may read and register."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from assetd.db.base import Base, IDModel, TenantOwned, TimestampedModel, utcnow


class ProviderKind(enum.StrEnum):
    local = "local"
    s3 = "s3"


class StorageProvider(IDModel, TimestampedModel, TenantOwned, Base):
    __tablename__ = "storage_providers"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "name", name="uq_storage_providers_tenant_name"),
    )

    name: Mapped[str] = mapped_column(sa.String(256))
    region: Mapped[str] = mapped_column(sa.String(256), default="")
    kind: Mapped[ProviderKind] = mapped_column(
        sa.Enum(ProviderKind, native_enum=False, length=16, validate_strings=True)
    )
    # s3: the one bucket requests may name (None: any the credentials can read), the
    # endpoint (None: AWS), credentials (None: the server's own) and a key prefix.
    bucket: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    endpoint_url: Mapped[str | None] = mapped_column(sa.String(2000), default=None)
    access_key_id: Mapped[str | None] = mapped_column(sa.String(256), default=None)
    # Never returned by the API; see docs/api.md "Storage providers".
    secret_access_key: Mapped[str | None] = mapped_column(sa.String(1024), default=None)
    prefix: Mapped[str] = mapped_column(sa.String(512), default="")
    # local: the folder whose subfolders are the buckets (inside ASSETD_PROVIDER_LOCAL_ROOTS).
    root: Mapped[str | None] = mapped_column(sa.String(2000), default=None)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow)
