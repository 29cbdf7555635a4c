"""Declarative base with a naming convention, and the mixins every table shares."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeDecorator

from assetd.ids import new_id

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite hands back naive values, psycopg a zone like Etc/UTC: make both plain UTC.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime,
        dict[str, Any]: sa.JSON,
        list[str]: sa.JSON,
        list[dict[str, str]]: sa.JSON,
    }


class IDModel:
    id: Mapped[str] = mapped_column(sa.String(24), primary_key=True, default=new_id)


class TimestampedModel:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TenantOwned:
    """Rows that belong to one tenant; repositories scope every query on this column."""

    @declared_attr
    def tenant_id(cls) -> Mapped[str]:
        return mapped_column(
            sa.String(24), sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True
        )
