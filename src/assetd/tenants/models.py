from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from assetd.db.base import Base, IDModel, TimestampedModel

TENANT_SLUG_PATTERN = r"^[a-z][a-z0-9]{2,15}$"


class Tenant(IDModel, TimestampedModel, Base):
    __tablename__ = "tenants"

    slug: Mapped[str] = mapped_column(sa.String(16), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    # Policies; None means "the server default" (size) or "no restriction".
    max_file_size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    allowed_extensions: Mapped[list[str] | None] = mapped_column(default=None)
    allowed_types: Mapped[list[str] | None] = mapped_column(default=None)
    quota_bytes: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    # Bytes of distinct blobs the tenant holds; kept in step by the blob repository.
    used_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    modified_at: Mapped[datetime | None] = mapped_column(default=None)
