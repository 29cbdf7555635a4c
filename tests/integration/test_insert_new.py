"""db.repository.insert_new: Core INSERTs that leave the objects as a flush would."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from assetd.assets.models import Access, Asset, AssetKind, AssetState, AssetType
from assetd.db.base import utcnow
from assetd.db.repository import _default_of, insert_new
from assetd.db.session import Database
from assetd.events.models import Event
from assetd.ids import new_id
from tests.factories import TenantCredentials

pytestmark = pytest.mark.anyio


def _asset(tenant_id: str, **fields: Any) -> Asset:
    now = utcnow()
    return Asset(
        id=new_id(),
        tenant_id=tenant_id,
        kind=AssetKind.LINK,
        type=AssetType.other,
        access=Access.PRIVATE,
        state=AssetState.active,
        url="https://example.com/",
        created_at=now,
        modified_at=now,
        **fields,
    )


def _event(tenant_id: str, event_type: str) -> Event:
    return Event(id=new_id(), tenant_id=tenant_id, type=event_type, actor="test")


async def test_rows_are_inserted_with_the_python_defaults(
    db: Database, tenant: TenantCredentials
) -> None:
    asset = _asset(tenant.id, name="given", tags=["a"])
    async with db.session() as session:
        await insert_new(session, asset)
    async with db.session(write=False) as session:
        row = (
            await session.execute(
                sa.select(Asset.__table__).where(Asset.__table__.c.id == asset.id)
            )
        ).one()
    assert row.name == "given"
    assert row.tags == ["a"]
    # Unset attributes took their columns' defaults, on the row and on the object alike.
    assert row.description == ""
    assert asset.description == ""
    assert row.metadata == {}
    assert asset.meta == {}
    assert row.revision == 1
    assert asset.revision == 1
    assert row.trashed_at is None
    assert asset.trashed_at is None
    assert row.security_template_ids == []
    assert asset.security_template_ids == []


async def test_objects_are_attached_persistent_and_unchanged(
    db: Database, tenant: TenantCredentials
) -> None:
    async with db.session() as session:
        asset = _asset(tenant.id)
        await insert_new(session, asset)
        state = sa.inspect(asset)
        assert state.persistent
        assert not session.dirty
        assert not session.new
        assert await session.get(Asset, asset.id) is asset  # the identity map has it
        # A later change is tracked like any loaded object's: one UPDATE at the flush.
        asset.name = "renamed"
        assert asset in session.dirty
    async with db.session(write=False) as session:
        stored = await session.get(Asset, asset.id)
        assert stored is not None
        assert stored.name == "renamed"


async def test_several_rows_of_a_table_go_in_together(
    db: Database, tenant: TenantCredentials
) -> None:
    events = [_event(tenant.id, f"test.{i}") for i in range(3)]
    async with db.session() as session:
        await insert_new(session, *events, _asset(tenant.id))
    async with db.session(write=False) as session:
        found = (
            await session.execute(
                sa.select(Event.type)
                .where(Event.tenant_id == tenant.id, Event.type.like("test.%"))
                .order_by(Event.type)
            )
        ).scalars()
        assert list(found) == ["test.0", "test.1", "test.2"]
    assert all(e.details == {} and e.created_at is not None for e in events)


async def test_a_rolled_back_insert_leaves_nothing(db: Database, tenant: TenantCredentials) -> None:
    asset = _asset(tenant.id)
    asset_id = asset.id

    async def failing_unit_of_work() -> None:
        async with db.session() as session:
            await insert_new(session, asset)
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        await failing_unit_of_work()
    # Like an object loaded in the transaction, it is expired by the rollback.
    assert sa.inspect(asset).expired_attributes
    async with db.session(write=False) as session:
        assert await session.get(Asset, asset_id) is None


async def test_a_duplicate_key_fails_like_a_flush(db: Database, tenant: TenantCredentials) -> None:
    asset = _asset(tenant.id)
    async with db.session() as session:
        await insert_new(session, asset)
    twin = _asset(tenant.id)
    twin.id = asset.id
    with pytest.raises(sa.exc.IntegrityError):
        async with db.session() as session:
            await insert_new(session, twin)


def test_a_database_side_default_must_be_set_by_the_caller() -> None:
    column = sa.Column("n", sa.Integer, server_default=sa.text("7"))
    default = _default_of(column)
    assert default is not None
    with pytest.raises(TypeError, match="set it on the object"):
        default()
    assert _default_of(sa.Column("m", sa.Integer)) is None
    assert _default_of(sa.Column("k", sa.Integer, default=3)) is not None
