"""All SQL about collections, their members and their security templates."""

from __future__ import annotations

from collections.abc import Collection as Many
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from assetd.assets.models import Asset, AssetState
from assetd.collections.models import Collection, CollectionAsset, CollectionSecurityTemplate
from assetd.db.base import utcnow
from assetd.db.repository import TenantScopedRepository
from assetd.templates.models import Action
from assetd.templates.repository import access_condition, granted_actions, replace_links


class CollectionRepository(TenantScopedRepository[Collection]):
    model = Collection

    async def get_for(
        self, tenant_id: str, collection_id: str, *, lock: bool = False
    ) -> Collection | None:
        stmt = self.scoped_statement(tenant_id).where(Collection.id == collection_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def name_taken(self, tenant_id: str, name: str, *, except_id: str | None = None) -> bool:
        stmt = sa.select(Collection.id).where(
            Collection.tenant_id == tenant_id, Collection.name == name
        )
        if except_id is not None:
            stmt = stmt.where(Collection.id != except_id)
        return (await self.session.scalar(stmt.limit(1))) is not None

    async def page(
        self,
        tenant_id: str,
        *,
        where: Sequence[sa.ColumnElement[bool]],
        limit: int,
        offset: int,
    ) -> list[Collection]:
        stmt = (
            self.scoped_statement(tenant_id)
            .where(*where)
            .order_by(Collection.name, Collection.id)
            .limit(limit)
            .offset(offset)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def count(self, tenant_id: str, *, where: Sequence[sa.ColumnElement[bool]]) -> int:
        stmt = (
            sa.select(sa.func.count())
            .select_from(Collection)
            .where(Collection.tenant_id == tenant_id, *where)
        )
        return int(await self.session.scalar(stmt) or 0)

    async def delete(self, collection: Collection) -> None:
        # Memberships and template links go with it (ON DELETE CASCADE).
        await self.session.delete(collection)
        await self.session.flush()

    # -- members ------------------------------------------------------------------------------

    async def addable_assets(
        self,
        tenant_id: str,
        asset_ids: Many[str],
        visible: sa.ColumnElement[bool] | None,
    ) -> set[str]:
        """Which of `asset_ids` are the tenant's assets (not half-made) that pass `visible`.

        Read with a key-share lock, so none can be purged before the membership rows land.
        """
        if not asset_ids:
            return set()
        stmt = sa.select(Asset.id).where(
            Asset.tenant_id == tenant_id,
            Asset.id.in_(sorted(asset_ids)),
            Asset.state.in_([AssetState.active, AssetState.trashed]),
        )
        if visible is not None:
            stmt = stmt.where(visible)
        stmt = stmt.with_for_update(read=True, key_share=True)
        return set((await self.session.execute(stmt)).scalars())

    async def add_members(
        self, tenant_id: str, collection_id: str, asset_ids: Sequence[str]
    ) -> None:
        """Insert the memberships that are not there yet; existing ones keep their added_at."""
        if not asset_ids:
            return
        rows = [
            {
                "tenant_id": tenant_id,
                "collection_id": collection_id,
                "asset_id": asset_id,
                "added_at": utcnow(),
            }
            for asset_id in asset_ids
        ]
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(CollectionAsset).on_conflict_do_nothing(
            index_elements=["collection_id", "asset_id"]
        )
        await self.session.execute(stmt, rows)

    async def members_among(
        self, tenant_id: str, collection_id: str, asset_ids: Many[str]
    ) -> set[str]:
        if not asset_ids:
            return set()
        stmt = sa.select(CollectionAsset.asset_id).where(
            CollectionAsset.tenant_id == tenant_id,
            CollectionAsset.collection_id == collection_id,
            CollectionAsset.asset_id.in_(sorted(asset_ids)),
        )
        return set((await self.session.execute(stmt)).scalars())

    async def remove_member(self, tenant_id: str, collection_id: str, asset_id: str) -> bool:
        result = await self.session.execute(
            sa.delete(CollectionAsset).where(
                CollectionAsset.tenant_id == tenant_id,
                CollectionAsset.collection_id == collection_id,
                CollectionAsset.asset_id == asset_id,
            )
        )
        return bool(getattr(result, "rowcount", 0))

    async def is_member(self, tenant_id: str, collection_id: str, asset_id: str) -> bool:
        stmt = sa.select(CollectionAsset.asset_id).where(
            CollectionAsset.tenant_id == tenant_id,
            CollectionAsset.collection_id == collection_id,
            CollectionAsset.asset_id == asset_id,
        )
        return (await self.session.scalar(stmt)) is not None

    @staticmethod
    def membership_condition(tenant_id: str, collection_id: str) -> sa.ColumnElement[bool]:
        """A WHERE clause on assets: the asset is in the collection (a primary-key probe)."""
        return (
            sa.select(sa.literal(1))
            .where(
                CollectionAsset.collection_id == collection_id,
                CollectionAsset.asset_id == Asset.id,
                CollectionAsset.tenant_id == tenant_id,
            )
            .exists()
        )

    # -- security templates -------------------------------------------------------------------

    async def set_templates(
        self, tenant_id: str, collection_id: str, template_ids: Many[str]
    ) -> None:
        await replace_links(
            self.session,
            CollectionSecurityTemplate.collection_id,
            tenant_id,
            collection_id,
            template_ids,
        )

    async def actions(
        self, tenant_id: str, collection_id: str, roles: Many[str]
    ) -> frozenset[Action] | None:
        """What `roles` may do on the collection; None when it carries no template (anything)."""
        return await granted_actions(
            self.session, CollectionSecurityTemplate.collection_id, tenant_id, collection_id, roles
        )

    @staticmethod
    def visible_ids(tenant_id: str, roles: Many[str]) -> sa.Select[str]:
        """The ids of the tenant's collections that `roles` may see (for q=collection:…)."""
        return sa.select(Collection.id).where(
            Collection.tenant_id == tenant_id,
            CollectionRepository.access_condition(tenant_id, roles),
        )

    @staticmethod
    def access_condition(
        tenant_id: str, roles: Many[str], action: Action = Action.view
    ) -> sa.ColumnElement[bool]:
        """A WHERE clause on collections: no template at all, or one granting a role `action`."""
        return access_condition(
            CollectionSecurityTemplate.collection_id, Collection.id, tenant_id, roles, action
        )
