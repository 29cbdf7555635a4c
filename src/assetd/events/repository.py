"""All SQL about events, webhook subscriptions and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from assetd.db.repository import TenantScopedRepository
from assetd.events.models import Event, WebhookDelivery, WebhookSubscription
from assetd.jobs.models import Job


class EventRepository(TenantScopedRepository[Event]):
    model = Event

    async def find(
        self, tenant_id: str, *, where: Sequence[Any], order_by: Sequence[Any], limit: int
    ) -> list[Event]:
        stmt = self.scoped_statement(tenant_id).where(*where).order_by(*order_by).limit(limit)
        return list((await self.session.execute(stmt)).scalars())


class WebhookSubscriptionRepository(TenantScopedRepository[WebhookSubscription]):
    model = WebhookSubscription

    async def list_for(
        self, tenant_id: str, *, only_active: bool = False
    ) -> list[WebhookSubscription]:
        stmt = self.scoped_statement(tenant_id).order_by(
            WebhookSubscription.created_at, WebhookSubscription.id
        )
        if only_active:
            stmt = stmt.where(WebhookSubscription.is_active.is_(True))
        return list((await self.session.execute(stmt)).scalars())

    async def count(self, tenant_id: str) -> int:
        stmt = sa.select(sa.func.count()).where(WebhookSubscription.tenant_id == tenant_id)
        return int(await self.session.scalar(stmt) or 0)

    async def delete(self, subscription: WebhookSubscription) -> None:
        await self.session.delete(subscription)
        await self.session.flush()


class WebhookDeliveryRepository(TenantScopedRepository[WebhookDelivery]):
    model = WebhookDelivery

    async def list_for(
        self, tenant_id: str, subscription_id: str, *, limit: int
    ) -> list[WebhookDelivery]:
        stmt = (
            self.scoped_statement(tenant_id)
            .where(WebhookDelivery.subscription_id == subscription_id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def for_job(
        self, tenant_id: str, job_id: str
    ) -> tuple[WebhookDelivery, WebhookSubscription, Event] | None:
        stmt = (
            sa.select(WebhookDelivery, WebhookSubscription, Event)
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
            .join(Event, Event.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.tenant_id == tenant_id, WebhookDelivery.job_id == job_id)
        )
        row = (await self.session.execute(stmt)).one_or_none()
        return None if row is None else (row[0], row[1], row[2])

    async def add_jobs(self, jobs: list[Job]) -> None:
        """Job rows nobody pushes to a queue: the sweeper finds and pushes them."""
        self.session.add_all(jobs)
        await self.session.flush()
