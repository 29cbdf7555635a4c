"""The webhook delivery job: POST one event to one subscription, note the attempt."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import structlog

from assetd.db.base import utcnow
from assetd.events.service import WEBHOOK, WebhookService, encode_payload, sign
from assetd.events.targets import TargetRefused, resolve

if TYPE_CHECKING:
    from assetd.context import AppContext
    from assetd.jobs.worker import JobInfo, JobRegistry

log = structlog.get_logger()

TIMEOUT_SECONDS = 10.0


class WebhookDeliveryError(Exception):
    """The receiver did not answer 2xx; the job system retries with back-off."""


async def deliver(context: AppContext, job: JobInfo) -> None:
    async with context.db.session(write=False) as session:
        found = await WebhookService(session).for_job(job.tenant_id, job.id)
    if found is None:
        return  # the subscription (and with it the delivery) was deleted meanwhile
    delivery, subscription, event = found
    if not subscription.is_active:
        status_code, error = None, "the webhook is inactive"
    else:
        body = encode_payload(event)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "assetd-webhooks",
            "X-Assetd-Event": event.type,
            "X-Assetd-Delivery": delivery.id,
            "X-Assetd-Signature": sign(subscription.secret, body),
        }
        status_code, error = None, None
        allow_private = context.settings.webhook_allow_private_targets
        try:
            target = await resolve(subscription.url, allow_private=allow_private)
            if target.host_header is not None:
                headers["Host"] = target.host_header
            extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
            # Streamed and never read: a receiver's response body is of no interest, however big.
            async with (
                httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client,
                client.stream(
                    "POST", target.url, content=body, headers=headers, extensions=extensions
                ) as reply,
            ):
                status_code = reply.status_code
        except TargetRefused as exc:
            error = f"refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if status_code is not None and not 200 <= status_code < 300:
            error = f"the receiver answered HTTP {status_code}"
    is_final = error is not None and (job.attempt >= job.max_attempts or not subscription.is_active)
    async with context.db.session() as session:
        await WebhookService(session).record_attempt(
            job.tenant_id,
            delivery.id,
            attempt=job.attempt,
            at=utcnow(),
            status_code=status_code,
            error=error,
            is_final=is_final,
        )
    if error is None:
        log.info("webhook.delivered", delivery_id=delivery.id, status_code=status_code)
        return
    if not subscription.is_active:
        return  # nothing to retry: the delivery is closed as failed
    raise WebhookDeliveryError(error)


def register(registry: JobRegistry) -> None:
    registry.register(WEBHOOK, deliver)
