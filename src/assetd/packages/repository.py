"""All SQL about packages, asset dependencies and package origins; and the bulk reads a
report needs (one query per kind of fact, never one per entry)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection as Many
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.models import Asset, AssetState, Blob, Version
from assetd.collections.models import Collection, CollectionAsset
from assetd.db.repository import TenantScopedRepository
from assetd.packages.models import AssetDependency, OriginKind, Package, PackageOrigin

# SQLite allows 32k bound parameters per statement; stay well below it, PostgreSQL too.
BATCH = 900


def _batches(ids: Iterable[str]) -> Iterable[list[str]]:
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), BATCH):
        yield unique[start : start + BATCH]


class PackageRepository(TenantScopedRepository[Package]):
    model = Package

    async def get_for(self, tenant_id: str, package_id: str) -> Package | None:
        stmt = self.scoped_statement(tenant_id).where(Package.id == package_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def page(self, tenant_id: str, *, limit: int, offset: int) -> list[Package]:
        stmt = (
            self.scoped_statement(tenant_id)
            .order_by(Package.created_at.desc(), Package.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def count(self, tenant_id: str) -> int:
        stmt = sa.select(sa.func.count()).select_from(Package).where(Package.tenant_id == tenant_id)
        return int(await self.session.scalar(stmt) or 0)

    async def delete(self, package: Package) -> None:
        await self.session.delete(package)
        await self.session.flush()


class PackageFactsRepository:
    """Reads across assets, collections and blobs that a package report compares against."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        name: str = self.session.get_bind().dialect.name
        return name

    async def assets(
        self,
        tenant_id: str,
        ids: Iterable[str],
        visible: sa.ColumnElement[bool] | None = None,
    ) -> list[Asset]:
        """The tenant's assets among ids (pending uploads excluded), optionally only those
        `visible` lets the caller see."""
        found: list[Asset] = []
        for batch in _batches(ids):
            stmt = sa.select(Asset).where(
                Asset.tenant_id == tenant_id,
                Asset.id.in_(batch),
                Asset.state != AssetState.pending,
            )
            if visible is not None:
                stmt = stmt.where(visible)
            found.extend((await self.session.execute(stmt)).scalars())
        return found

    async def visible_ids(
        self, tenant_id: str, ids: Iterable[str], visible: sa.ColumnElement[bool]
    ) -> set[str]:
        found: set[str] = set()
        for batch in _batches(ids):
            stmt = sa.select(Asset.id).where(
                Asset.tenant_id == tenant_id, Asset.id.in_(batch), visible
            )
            found.update((await self.session.execute(stmt)).scalars())
        return found

    # An id any row holds, in any tenant, cannot be given to a new row; only the ids leave.
    # cross-tenant: ids are global primary keys.
    async def taken_ids(self, ids: Iterable[str]) -> set[str]:
        taken: set[str] = set()
        for batch in _batches(ids):
            for model in (Asset, Collection):
                stmt = sa.select(model.id).where(model.id.in_(batch))
                taken.update((await self.session.execute(stmt)).scalars())
        return taken

    async def origins(
        self, tenant_id: str, kind: OriginKind, source_ids: Iterable[str]
    ) -> list[PackageOrigin]:
        found: list[PackageOrigin] = []
        for batch in _batches(source_ids):
            stmt = sa.select(PackageOrigin).where(
                PackageOrigin.tenant_id == tenant_id,
                PackageOrigin.kind == kind,
                PackageOrigin.source_id.in_(batch),
            )
            found.extend((await self.session.execute(stmt)).scalars())
        return found

    async def save_origin(
        self,
        tenant_id: str,
        kind: OriginKind,
        source_id: str,
        target_id: str,
        package_id: str,
        revision: int | None,
    ) -> None:
        insert = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        values = {
            "tenant_id": tenant_id,
            "kind": kind,
            "source_id": source_id,
            "target_id": target_id,
            "package_id": package_id,
            "revision": revision,
        }
        stmt = insert(PackageOrigin).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "kind", "source_id"],
            set_={k: v for k, v in values.items() if k not in ("tenant_id", "kind", "source_id")},
        )
        await self.session.execute(stmt)

    async def dependencies(self, tenant_id: str, asset_ids: Iterable[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for batch in _batches(asset_ids):
            stmt = sa.select(AssetDependency.asset_id, AssetDependency.depends_on).where(
                AssetDependency.tenant_id == tenant_id, AssetDependency.asset_id.in_(batch)
            )
            for asset_id, depends_on in await self.session.execute(stmt):
                found[asset_id].add(depends_on)
        return dict(found)

    async def replace_dependencies(
        self, tenant_id: str, asset_id: str, depends_on: Many[str]
    ) -> None:
        await self.session.execute(
            sa.delete(AssetDependency).where(
                AssetDependency.tenant_id == tenant_id, AssetDependency.asset_id == asset_id
            )
        )
        if depends_on:
            await self.session.execute(
                sa.insert(AssetDependency),
                [
                    {"tenant_id": tenant_id, "asset_id": asset_id, "depends_on": target}
                    for target in depends_on
                ],
            )

    async def required_by(
        self, tenant_id: str, asset_id: str, visible: sa.ColumnElement[bool] | None
    ) -> list[str]:
        """The assets that declare they depend on this one (those the caller may see)."""
        stmt = (
            sa.select(AssetDependency.asset_id)
            .join(Asset, Asset.id == AssetDependency.asset_id)
            .where(AssetDependency.tenant_id == tenant_id, AssetDependency.depends_on == asset_id)
            .order_by(AssetDependency.asset_id)
            .limit(1000)
        )
        if visible is not None:
            stmt = stmt.where(visible)
        return list((await self.session.execute(stmt)).scalars())

    async def memberships(self, tenant_id: str, asset_ids: Iterable[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for batch in _batches(asset_ids):
            stmt = sa.select(CollectionAsset.asset_id, CollectionAsset.collection_id).where(
                CollectionAsset.tenant_id == tenant_id, CollectionAsset.asset_id.in_(batch)
            )
            for asset_id, collection_id in await self.session.execute(stmt):
                found[asset_id].add(collection_id)
        return dict(found)

    async def collections(
        self, tenant_id: str, ids: Iterable[str], names: Iterable[str]
    ) -> list[Collection]:
        found: dict[str, Collection] = {}
        for column, values in ((Collection.id, ids), (Collection.name, names)):
            for batch in _batches(values):
                stmt = sa.select(Collection).where(
                    Collection.tenant_id == tenant_id, column.in_(batch)
                )
                for collection in (await self.session.execute(stmt)).scalars():
                    found[collection.id] = collection
        return list(found.values())

    async def known_blobs(self, tenant_id: str, sha256s: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for batch in _batches(sha256s):
            stmt = sa.select(Blob.sha256).where(
                Blob.tenant_id == tenant_id, Blob.sha256.in_(batch), Blob.refcount > 0
            )
            found.update((await self.session.execute(stmt)).scalars())
        return found

    async def current_versions(self, tenant_id: str, asset_ids: Iterable[str]) -> list[Version]:
        found: list[Version] = []
        for batch in _batches(asset_ids):
            stmt = (
                sa.select(Version)
                .join(Asset, Asset.current_version_id == Version.id)
                .where(Version.tenant_id == tenant_id, Asset.id.in_(batch))
            )
            found.extend((await self.session.execute(stmt)).scalars())
        return found
