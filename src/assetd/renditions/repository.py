"""All SQL about renditions. Every query is scoped to one tenant."""

from __future__ import annotations

import sqlalchemy as sa

from assetd.db.repository import TenantScopedRepository
from assetd.jobs.models import Job, JobState
from assetd.renditions.models import Rendition


class RenditionRepository(TenantScopedRepository[Rendition]):
    model = Rendition

    async def find(self, tenant_id: str, version_id: str, preset: str) -> Rendition | None:
        stmt = self.scoped_statement(tenant_id).where(
            Rendition.version_id == version_id, Rendition.preset == preset
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def list_for_version(
        self, tenant_id: str, version_id: str, presets: list[str]
    ) -> list[Rendition]:
        stmt = self.scoped_statement(tenant_id).where(
            Rendition.version_id == version_id, Rendition.preset.in_(presets)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def presets_of(self, tenant_id: str, version_id: str) -> set[str]:
        stmt = sa.select(Rendition.preset).where(
            Rendition.tenant_id == tenant_id, Rendition.version_id == version_id
        )
        return set((await self.session.execute(stmt)).scalars())

    async def delete_for_asset(self, tenant_id: str, asset_id: str) -> list[str]:
        """Delete the asset's renditions; the blob ids they referenced, one per rendition."""
        stmt = (
            sa.delete(Rendition)
            .where(Rendition.tenant_id == tenant_id, Rendition.asset_id == asset_id)
            .returning(Rendition.blob_id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def job_state(self, tenant_id: str, version_id: str, kind: str) -> JobState | None:
        """The state of the version's latest job of this kind (None: there is none)."""
        stmt = (
            sa.select(Job.state)
            .where(Job.tenant_id == tenant_id, Job.version_id == version_id, Job.kind == kind)
            .order_by(Job.created_at.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()
