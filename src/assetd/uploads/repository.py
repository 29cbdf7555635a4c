"""All SQL about upload sessions and their parts."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from assetd.db.repository import TenantScopedRepository
from assetd.ids import is_id
from assetd.uploads.models import UploadPart, UploadSession, UploadState

LIVE_STATES = (UploadState.open, UploadState.completing)


class UploadSessionRepository(TenantScopedRepository[UploadSession]):
    model = UploadSession

    async def find(
        self, tenant_id: str, session_id: str, *, lock: bool = False
    ) -> UploadSession | None:
        if not is_id(session_id):
            return None
        stmt = self.scoped_statement(tenant_id).where(UploadSession.id == session_id)
        if lock:
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    # cross-tenant: a presigned part URL names no tenant; its HMAC proves the session id.
    async def find_any_tenant(self, session_id: str) -> UploadSession | None:
        """For presigned part URLs: the HMAC already proved the id, and the row names its tenant."""
        if not is_id(session_id):
            return None
        stmt = sa.select(UploadSession).where(UploadSession.id == session_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def latest_open_for_asset(self, tenant_id: str, asset_id: str) -> UploadSession | None:
        stmt = (
            self.scoped_statement(tenant_id)
            .where(UploadSession.asset_id == asset_id, UploadSession.state == UploadState.open)
            .order_by(UploadSession.created_at.desc(), UploadSession.id.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    # cross-tenant: the expiry job ends every tenant's abandoned sessions.
    async def expired(self, now: datetime, limit: int) -> list[UploadSession]:
        stmt = (
            sa.select(UploadSession)
            .where(UploadSession.state.in_(LIVE_STATES), UploadSession.expires_at < now)
            .order_by(UploadSession.expires_at)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    # cross-tenant: storage handles are global; the orphan sweep covers every tenant.
    async def live_handles(self, handles: list[str]) -> set[str]:
        """Which of these storage handles belong to a session still open or completing."""
        if not handles:
            return set()
        stmt = sa.select(UploadSession.storage_handle).where(
            UploadSession.storage_handle.in_(handles), UploadSession.state.in_(LIVE_STATES)
        )
        return set((await self.session.execute(stmt)).scalars())


class UploadPartRepository(TenantScopedRepository[UploadPart]):
    model = UploadPart

    async def list_for(self, tenant_id: str, session_id: str) -> list[UploadPart]:
        stmt = (
            self.scoped_statement(tenant_id)
            .where(UploadPart.session_id == session_id)
            .order_by(UploadPart.number)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def forget(self, tenant_id: str, session_id: str, number: int) -> None:
        await self.session.execute(
            sa.delete(UploadPart).where(
                UploadPart.tenant_id == tenant_id,
                UploadPart.session_id == session_id,
                UploadPart.number == number,
            )
        )

    async def record(self, part: UploadPart) -> None:
        await self.forget(part.tenant_id, part.session_id, part.number)
        self.session.add(part)
        await self.session.flush()
