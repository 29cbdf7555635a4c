from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from assetd.db.base import Base, IDModel, TenantOwned, TimestampedModel


class ApiKey(IDModel, TimestampedModel, TenantOwned, Base):
    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(sa.String(200), default="")
    # The first characters of the key, shown in listings so people can tell keys apart.
    prefix: Mapped[str] = mapped_column(sa.String(16))
    # sha256 of the whole key: keys are 256-bit random, so a slow hash would add nothing.
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(default=list)
    roles: Mapped[list[str]] = mapped_column(default=list)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
