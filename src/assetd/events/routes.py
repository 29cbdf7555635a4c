"""The audit log (any reader of the tenant) and webhook subscriptions (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.auth.dependencies import require_scope
from assetd.auth.principal import ADMIN, READ, Principal
from assetd.context import AppContext, get_context
from assetd.db.dependencies import ReadOnly, UnitOfWork
from assetd.events.schemas import (
    EventPage,
    EventRead,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveryRead,
    WebhookRead,
    WebhookUpdate,
)
from assetd.events.service import MAX_PAGE_SIZE, EventService, WebhookService

router = APIRouter(tags=["events"])

Reader = Annotated[Principal, Depends(require_scope(READ))]
Admin = Annotated[Principal, Depends(require_scope(ADMIN))]
Session = Annotated[AsyncSession, UnitOfWork]
ReadSession = Annotated[AsyncSession, ReadOnly]
Context = Annotated[AppContext, Depends(get_context)]
WebhookId = Annotated[str, Path(max_length=64, description="The webhook's 24-hex id.")]
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)]


@router.get("/events", response_model=EventPage, summary="List the tenant's events (audit log)")
async def list_events(
    principal: Reader,
    session: ReadSession,
    q: Annotated[str | None, Query(max_length=4000, description="Query language, see docs")] = None,
    sort: Annotated[str | None, Query(max_length=500)] = None,
    page_size: PageSize = 60,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> EventPage:
    result = await EventService(session).search(
        principal, q=q, sort=sort, page_size=page_size, cursor=cursor
    )
    return EventPage(
        items=[EventRead.model_validate(e) for e in result.items],
        page_size=page_size,
        next_cursor=result.next_cursor,
    )


@router.post("/webhooks", status_code=201, response_model=WebhookCreated, summary="Add a webhook")
async def create_webhook(
    data: WebhookCreate, response: Response, principal: Admin, session: Session, context: Context
) -> WebhookCreated:
    service = WebhookService(session, allow_private=context.settings.webhook_allow_private_targets)
    subscription = await service.create(
        principal.tenant.id, url=data.url, event_types=data.event_types, is_active=data.is_active
    )
    response.headers["Location"] = f"/v1/webhooks/{subscription.id}"
    return WebhookCreated.model_validate(subscription)


@router.get("/webhooks", response_model=list[WebhookRead], summary="List webhooks")
async def list_webhooks(principal: Admin, session: ReadSession) -> list[WebhookRead]:
    rows = await WebhookService(session).list_for(principal.tenant.id)
    return [WebhookRead.model_validate(r) for r in rows]


@router.get("/webhooks/{webhook_id}", response_model=WebhookRead, summary="Get a webhook")
async def get_webhook(webhook_id: WebhookId, principal: Admin, session: ReadSession) -> WebhookRead:
    row = await WebhookService(session).get(principal.tenant.id, webhook_id)
    return WebhookRead.model_validate(row)


@router.patch("/webhooks/{webhook_id}", response_model=WebhookRead, summary="Change a webhook")
async def update_webhook(
    webhook_id: WebhookId, data: WebhookUpdate, principal: Admin, session: Session, context: Context
) -> WebhookRead:
    service = WebhookService(session, allow_private=context.settings.webhook_allow_private_targets)
    row = await service.update(
        principal.tenant.id,
        webhook_id,
        url=data.url,
        event_types=data.event_types,
        is_active=data.is_active,
    )
    return WebhookRead.model_validate(row)


@router.delete("/webhooks/{webhook_id}", status_code=204, summary="Delete a webhook")
async def delete_webhook(webhook_id: WebhookId, principal: Admin, session: Session) -> Response:
    await WebhookService(session).delete(principal.tenant.id, webhook_id)
    return Response(status_code=204)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    response_model=list[WebhookDeliveryRead],
    summary="A webhook's delivery log, newest first",
)
async def list_webhook_deliveries(
    webhook_id: WebhookId, principal: Admin, session: ReadSession, page_size: PageSize = 100
) -> list[WebhookDeliveryRead]:
    rows = await WebhookService(session).list_deliveries(
        principal.tenant.id, webhook_id, limit=page_size
    )
    return [WebhookDeliveryRead.model_validate(r) for r in rows]
