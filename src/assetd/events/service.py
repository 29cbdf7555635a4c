"""Event use cases: record changes (and schedule their webhook deliveries), list them, and
manage webhook subscriptions. Framework-free: flushes, never commits."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets import query
from assetd.auth.principal import Principal
from assetd.db.base import utcnow
from assetd.db.repository import insert_new
from assetd.errors import InvalidInput, NotFound
from assetd.events.models import (
    DeliveryState,
    Event,
    EventType,
    WebhookDelivery,
    WebhookSubscription,
)
from assetd.events.query import CREATED_AT_FIELD, EVENT_FIELDS, ID_FIELD
from assetd.events.repository import (
    EventRepository,
    WebhookDeliveryRepository,
    WebhookSubscriptionRepository,
)
from assetd.events.targets import check_saved_url
from assetd.ids import new_id
from assetd.jobs.models import Job
from assetd.jobs.service import DEFAULT_MAX_ATTEMPTS, JobService

log = structlog.get_logger()

WEBHOOK = "webhook"  # the job kind that delivers one event to one subscription
ALL_TYPES = "*"
EVENT_TYPES = frozenset(t.value for t in EventType)
MAX_PAGE_SIZE = 1000
MAX_SUBSCRIPTIONS = 50
MAX_URL_LENGTH = 2048
MAX_ERROR_CHARS = 1000


# How long a process trusts what it read of a tenant's active webhooks. Every event looks
# them up (an upload records two, inside its write transaction) and they rarely change. A
# change made through this process applies at once; one made through another process,
# within this many seconds. A delivery checks at send time that its webhook is still active.
ACTIVE_WEBHOOKS_TTL_SECONDS = 5.0
_MAX_CACHED_TENANTS = 10_000


@dataclass
class EventList:
    items: list[Event]
    next_cursor: str | None


@dataclass(frozen=True)
class _Target:
    """What recording an event needs to know of an active subscription."""

    id: str
    event_types: tuple[str, ...]

    def wants(self, event_type: str) -> bool:
        return ALL_TYPES in self.event_types or event_type in self.event_types


class _ActiveWebhooks:
    """Active subscriptions by (database, tenant), kept ACTIVE_WEBHOOKS_TTL_SECONDS."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: dict[tuple[str, str], tuple[float, list[_Target]]] = {}

    @staticmethod
    def key(session: AsyncSession, tenant_id: str) -> tuple[str, str]:
        # By database too: tests (and tools) run several apps, on several databases, in one
        # process.
        bind = session.get_bind()
        return (str(bind.engine.url), tenant_id)

    def get(self, key: tuple[str, str]) -> list[_Target] | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < self.clock():
            return None
        return entry[1]

    def put(self, key: tuple[str, str], targets: list[_Target]) -> None:
        if len(self._entries) >= _MAX_CACHED_TENANTS:
            self._entries.clear()
        self._entries[key] = (self.clock() + ACTIVE_WEBHOOKS_TTL_SECONDS, targets)

    def forget(self, key: tuple[str, str]) -> None:
        self._entries.pop(key, None)


_active_webhooks = _ActiveWebhooks()


class EventService:
    def __init__(self, session: AsyncSession, jobs: JobService | None = None) -> None:
        # Without a JobService, delivery jobs are written but not pushed: the sweeper pushes
        # them after jobs_requeue_after_seconds.
        self.session = session
        self.jobs = jobs
        self.events = EventRepository(session)
        self.subscriptions = WebhookSubscriptionRepository(session)
        self.deliveries = WebhookDeliveryRepository(session)

    async def record(
        self,
        actor: Principal | str,
        event_type: EventType,
        *,
        tenant_id: str | None = None,
        asset_id: str | None = None,
        version_number: int | None = None,
        key_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Event:
        """Add the event to the caller's transaction, and a delivery per matching webhook."""
        event = self.new_event(
            actor,
            event_type,
            tenant_id=tenant_id,
            asset_id=asset_id,
            version_number=version_number,
            key_id=key_id,
            details=details,
        )
        # Inserted now, by a Core statement: a flush costs more CPU than the statement.
        await insert_new(self.session, event)
        await self.inserted(event)
        return event

    def new_event(
        self,
        actor: Principal | str,
        event_type: EventType,
        *,
        tenant_id: str | None = None,
        asset_id: str | None = None,
        version_number: int | None = None,
        key_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> Event:
        """An event not yet in the database: for a caller that inserts it along with its own
        rows (insert_new, one statement per table), then passes it to inserted()."""
        if isinstance(actor, Principal):
            tenant_id, actor = actor.tenant.id, actor.actor
        if tenant_id is None:
            raise ValueError("an event needs a tenant")
        return Event(
            id=new_id(),
            tenant_id=tenant_id,
            type=event_type.value,
            actor=actor[:300],
            asset_id=asset_id,
            version_number=version_number,
            key_id=key_id,
            details=details or {},
            created_at=utcnow(),
        )

    async def inserted(self, *events: Event) -> None:
        """The deliveries of events just inserted, one per matching webhook."""
        for event in events:
            await self._schedule_deliveries(event)

    async def _schedule_deliveries(self, event: Event) -> None:
        subscriptions = [s for s in await self._active(event.tenant_id) if s.wants(event.type)]
        if not subscriptions:
            return
        if self.jobs is not None:
            jobs = await self.jobs.schedule(
                event.tenant_id, None, None, [WEBHOOK] * len(subscriptions)
            )
        else:
            jobs = [
                Job(tenant_id=event.tenant_id, kind=WEBHOOK, max_attempts=DEFAULT_MAX_ATTEMPTS)
                for _ in subscriptions
            ]
            await self.deliveries.add_jobs(jobs)
        for subscription, job in zip(subscriptions, jobs, strict=True):
            await self.deliveries.add(
                WebhookDelivery(
                    tenant_id=event.tenant_id,
                    subscription_id=subscription.id,
                    event_id=event.id,
                    job_id=job.id,
                )
            )

    async def _active(self, tenant_id: str) -> list[_Target]:
        key = _active_webhooks.key(self.session, tenant_id)
        targets = _active_webhooks.get(key)
        if targets is None:
            found = await self.subscriptions.list_for(tenant_id, only_active=True)
            targets = [_Target(s.id, tuple(s.event_types)) for s in found]
            _active_webhooks.put(key, targets)
        return targets

    async def search(
        self,
        principal: Principal,
        *,
        q: str | None,
        sort: str | None,
        page_size: int,
        cursor: str | None,
    ) -> EventList:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
        dialect = self.events.dialect
        where = []
        condition = query.compile_query(q, EVENT_FIELDS, dialect=dialect)
        if condition is not None:
            where.append(condition)
        keys = query.compile_sort(
            sort,
            EVENT_FIELDS,
            dialect=dialect,
            id_field=ID_FIELD,
            created_at_field=CREATED_AT_FIELD,
        )
        if cursor:
            where.append(query.cursor_condition(keys, cursor))
        items = await self.events.find(
            principal.tenant.id, where=where, order_by=query.order_by(keys), limit=page_size + 1
        )
        next_cursor = None
        if len(items) > page_size:
            items = items[:page_size]
            next_cursor = query.encode_cursor(keys, query.sort_values(keys, items[-1]))
        return EventList(items, next_cursor)


def event_payload(event: Event) -> dict[str, Any]:
    """The JSON body of a webhook delivery (the same shape as GET /v1/events items)."""
    return {
        "id": event.id,
        "type": event.type,
        "actor": event.actor,
        "assetId": event.asset_id,
        "versionNumber": event.version_number,
        "keyId": event.key_id,
        "details": event.details,
        "createdAt": event.created_at.isoformat(),
    }


def encode_payload(event: Event) -> bytes:
    return json.dumps(event_payload(event), separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, body: bytes) -> str:
    """The X-Assetd-Signature header value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host and no credentials; InvalidInput otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"url must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidInput("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidInput(f"url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("url must be an http:// or https:// URL")
    if not host:
        raise InvalidInput("url must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("url must not carry credentials; verify the signature instead")
    return url


def check_event_types(event_types: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(event_types))
    if not unique:
        raise InvalidInput("eventTypes must list at least one event type, or '*'")
    if ALL_TYPES in unique and len(unique) > 1:
        raise InvalidInput("'*' means every event type and stands alone")
    unknown = [t for t in unique if t != ALL_TYPES and t not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(
            f"unknown event types: {', '.join(repr(t) for t in unknown[:5])}; "
            f"known: {', '.join(sorted(EVENT_TYPES))}"
        )
    return unique


class WebhookService:
    def __init__(self, session: AsyncSession, *, allow_private: bool = False) -> None:
        """allow_private: URLs may name non-public addresses (see events.targets)."""
        self.allow_private = allow_private
        self.subscriptions = WebhookSubscriptionRepository(session)
        self.deliveries = WebhookDeliveryRepository(session)

    async def create(
        self, tenant_id: str, *, url: str, event_types: Sequence[str], is_active: bool = True
    ) -> WebhookSubscription:
        """The new subscription; its secret is readable now and never listed again."""
        if await self.subscriptions.count(tenant_id) >= MAX_SUBSCRIPTIONS:
            raise InvalidInput(f"a tenant has at most {MAX_SUBSCRIPTIONS} webhooks")
        subscription = WebhookSubscription(
            tenant_id=tenant_id,
            url=self._check_url(url),
            event_types=check_event_types(event_types),
            secret=secrets.token_hex(32),
            is_active=is_active,
            created_at=utcnow(),
            modified_at=utcnow(),
        )
        await self.subscriptions.add(subscription)
        self._changed(tenant_id)
        log.info("webhook.created", webhook_id=subscription.id)
        return subscription

    def _changed(self, tenant_id: str) -> None:
        _active_webhooks.forget(_active_webhooks.key(self.subscriptions.session, tenant_id))

    def _check_url(self, url: str) -> str:
        checked = check_url(url)
        check_saved_url(checked, allow_private=self.allow_private)
        return checked

    async def get(self, tenant_id: str, subscription_id: str) -> WebhookSubscription:
        subscription = await self.subscriptions.get(tenant_id, subscription_id)
        if subscription is None:
            raise NotFound(f"webhook {subscription_id} not found")
        return subscription

    async def list_for(self, tenant_id: str) -> list[WebhookSubscription]:
        return await self.subscriptions.list_for(tenant_id)

    async def update(
        self,
        tenant_id: str,
        subscription_id: str,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        is_active: bool | None = None,
    ) -> WebhookSubscription:
        subscription = await self.get(tenant_id, subscription_id)
        if url is not None:
            subscription.url = self._check_url(url)
        if event_types is not None:
            subscription.event_types = check_event_types(event_types)
        if is_active is not None:
            subscription.is_active = is_active
        subscription.modified_at = utcnow()
        await self.subscriptions.session.flush()
        self._changed(tenant_id)
        return subscription

    async def delete(self, tenant_id: str, subscription_id: str) -> None:
        await self.subscriptions.delete(await self.get(tenant_id, subscription_id))
        self._changed(tenant_id)
        log.info("webhook.deleted", webhook_id=subscription_id)

    async def list_deliveries(
        self, tenant_id: str, subscription_id: str, *, limit: int
    ) -> list[WebhookDelivery]:
        await self.get(tenant_id, subscription_id)
        return await self.deliveries.list_for(tenant_id, subscription_id, limit=limit)

    async def for_job(
        self, tenant_id: str, job_id: str
    ) -> tuple[WebhookDelivery, WebhookSubscription, Event] | None:
        return await self.deliveries.for_job(tenant_id, job_id)

    async def record_attempt(
        self,
        tenant_id: str,
        delivery_id: str,
        *,
        attempt: int,
        at: datetime,
        status_code: int | None,
        error: str | None,
        is_final: bool,
    ) -> None:
        """Note one attempt on the delivery log; the job system does the retrying."""
        delivery = await self.deliveries.get(tenant_id, delivery_id)
        if delivery is None:
            return
        delivery.attempts = max(delivery.attempts, attempt)
        delivery.status_code = status_code
        delivery.error = None if error is None else error[:MAX_ERROR_CHARS]
        delivery.last_attempt_at = at
        if error is None:
            delivery.state = DeliveryState.delivered
            delivery.delivered_at = at
        elif is_final:
            delivery.state = DeliveryState.failed
        await self.deliveries.session.flush()
