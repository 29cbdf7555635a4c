"""Native rendition endpoints: presets and signed on-the-fly transformations. HTTP only."""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.models import Access, Asset
from assetd.assets.service import AssetService
from assetd.auth.dependencies import optional_principal, require_scope
from assetd.auth.principal import READ, Principal
from assetd.context import AppContext, get_context
from assetd.db.dependencies import ReadOnly
from assetd.errors import Forbidden, NotFound, Unauthenticated
from assetd.problems import problem
from assetd.renditions.schemas import RenditionRead, TransformUrlCreate, TransformUrlRead
from assetd.renditions.service import (
    NotMadeYet,
    RenditionMaker,
    RenditionService,
    TransformSpec,
    rendition_response,
)
from assetd.templates.models import Action
from assetd.tenants.service import TenantService

router = APIRouter(tags=["renditions"])

Reader = Annotated[Principal, Depends(require_scope(READ))]
Context = Annotated[AppContext, Depends(get_context)]
ReadSession = Annotated[AsyncSession, ReadOnly]
Expires = Annotated[int | None, Query(ge=0, le=2**40)]
Signature = Annotated[str | None, Query(max_length=128)]
# Query integers are range-checked by the service (400), not by validation (422).
QueryInt = Annotated[int | None, Query(ge=-(2**31), le=2**31)]

SIGNING_PURPOSE = "rendition"


def _sign(context: AppContext, tenant_id: str, asset_id: str, name: str, expires: int) -> str:
    return context.signer.signature(SIGNING_PURPOSE, tenant_id, asset_id, name, expires)


def _check_signature(
    context: AppContext,
    tenant_id: str,
    asset_id: str,
    name: str,
    expires: int | None,
    signature: str | None,
) -> None:
    if signature is None or expires is None:
        raise Forbidden("a signed URL needs expires and signature")
    expected = _sign(context, tenant_id, asset_id, name, expires)
    # Bytes, not str: compare_digest refuses non-ASCII text, which a client may send.
    genuine = hmac.compare_digest(expected.encode(), signature.encode())
    if expires < int(time.time()) or not genuine:
        raise Forbidden("the signature is invalid or has expired")


def _files_url(context: AppContext, slug: str, asset_id: str, tail: str) -> str:
    return f"{context.settings.resolved_public_url()}/v1/files/{slug}/{asset_id}/{tail}"


def _maker(request: Request, context: AppContext) -> RenditionMaker:
    # One limiter per app (not per process-global): on-the-fly renders queue behind it.
    state = request.app.state
    limiter = getattr(state, "transform_limiter", None)
    if limiter is None:
        limiter = state.transform_limiter = anyio.CapacityLimiter(
            context.settings.transform_concurrency
        )
    return RenditionMaker(context.db, context.storage, limiter=limiter)


def _not_made_yet(request: Request, exc: NotMadeYet) -> Response:
    response = problem(404, exc.title, exc.detail, request)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _preset_response(
    request: Request, context: AppContext, session: AsyncSession, asset: Asset, preset: str
) -> Response:
    service = RenditionService(session, context.storage)
    try:
        rendition = await service.get_preset(asset.tenant_id, asset, preset)
    except NotMadeYet as exc:
        return _not_made_yet(request, exc)
    return await rendition_response(request, context.storage, asset, rendition)


@router.get(
    "/assets/{asset_id}/renditions",
    response_model=list[RenditionRead],
    summary="The renditions made so far of the current version, with URLs to fetch them",
)
@router.head(
    "/assets/{asset_id}/renditions",
    response_model=list[RenditionRead],
    operation_id="list_renditions_head",
)
async def list_renditions(
    asset_id: str, principal: Reader, context: Context, session: ReadSession
) -> list[RenditionRead]:
    # The URLs of a PRIVATE asset are signed: handing them out is downloading.
    asset = await AssetService(session, context.sniffer).get(principal, asset_id, Action.download)
    made = await RenditionService(session, context.storage).list_presets(principal.tenant.id, asset)
    expires = int(time.time()) + context.settings.signed_url_ttl_seconds
    items = []
    for rendition in made:
        url = _files_url(context, principal.tenant.slug, asset.id, f"renditions/{rendition.preset}")
        expires_at = None
        if asset.access is not Access.PUBLIC:
            signature = _sign(context, asset.tenant_id, asset.id, rendition.preset, expires)
            url += f"?expires={expires}&signature={signature}"
            expires_at = datetime.fromtimestamp(expires, UTC)
        items.append(
            RenditionRead(
                preset=rendition.preset,
                width=rendition.width,
                height=rendition.height,
                mime_type=rendition.mime_type,
                size_bytes=rendition.size_bytes,
                url=url,
                expires_at=expires_at,
            )
        )
    return items


@router.get(
    "/assets/{asset_id}/renditions/{preset}",
    response_class=Response,
    summary="A preset rendition's bytes (404 with Retry-After while it is being made)",
    operation_id="get_rendition",
)
@router.head(
    "/assets/{asset_id}/renditions/{preset}",
    response_class=Response,
    operation_id="get_rendition_head",
)
async def get_rendition(
    asset_id: str,
    preset: str,
    request: Request,
    principal: Reader,
    context: Context,
    session: ReadSession,
) -> Response:
    asset = await AssetService(session, context.sniffer).get(principal, asset_id, Action.download)
    return await _preset_response(request, context, session, asset, preset)


@router.get(
    "/files/{tenant}/{asset_id}/renditions/{preset}",
    response_class=Response,
    summary="A rendition of a PUBLIC asset without credentials, of a PRIVATE one by signed URL",
    operation_id="serve_rendition",
)
@router.head(
    "/files/{tenant}/{asset_id}/renditions/{preset}",
    response_class=Response,
    operation_id="serve_rendition_head",
)
async def serve_rendition(
    tenant: str,
    asset_id: str,
    preset: str,
    request: Request,
    context: Context,
    session: ReadSession,
    principal: Annotated[Principal | None, Depends(optional_principal)],
    expires: Expires = None,
    signature: Signature = None,
) -> Response:
    tenant_id = await TenantService(session).find_id(tenant)
    if tenant_id is None:  # answered like a missing asset: slugs are not for probing
        raise NotFound(f"asset {asset_id} not found")
    signed = signature is not None or expires is not None
    if signed:
        # Checked before any lookup: a forged URL learns nothing, not even whether it exists.
        _check_signature(context, tenant_id, asset_id, preset, expires, signature)
    service = AssetService(session, context.sniffer)
    asset, _ = await service.find_content(tenant_id, asset_id, include_trashed=False)
    if not signed and asset.access is not Access.PUBLIC:
        await _authorize_private(service, principal, tenant_id, asset)
    return await _preset_response(request, context, session, asset, preset)


async def _authorize_private(
    service: AssetService, principal: Principal | None, tenant_id: str, asset: Asset
) -> None:
    if principal is None:
        raise Unauthenticated("this rendition is private: use credentials or a signed URL")
    if principal.tenant.id != tenant_id:
        raise NotFound(f"asset {asset.id} not found")
    if not principal.has(READ):
        raise Forbidden(f"this operation needs the {READ!r} scope")
    await service.authorize(principal, asset, Action.download)


@router.get(
    "/files/{tenant}/{asset_id}/transform",
    response_class=Response,
    summary="An on-the-fly transformation of the current version; the URL must be signed",
    operation_id="serve_transform",
)
@router.head(
    "/files/{tenant}/{asset_id}/transform",
    response_class=Response,
    operation_id="serve_transform_head",
)
async def serve_transform(
    tenant: str,
    asset_id: str,
    request: Request,
    context: Context,
    session: ReadSession,
    w: QueryInt = None,
    h: QueryInt = None,
    fit: Annotated[str, Query(max_length=16)] = "inside",
    fmt: Annotated[str, Query(max_length=16)] = "webp",
    q: Annotated[int, Query(ge=-(2**31), le=2**31)] = 80,
    expires: Expires = None,
    signature: Signature = None,
) -> Response:
    spec = TransformSpec(w, h, fit, fmt, q)
    tenant_id = await TenantService(session).find_id(tenant)
    if tenant_id is None:
        raise NotFound(f"asset {asset_id} not found")
    # Always signed, and checked first: nobody makes us burn CPU on sizes we did not issue.
    _check_signature(context, tenant_id, asset_id, spec.key, expires, signature)
    spec.check()
    asset, version = await AssetService(session, context.sniffer).find_content(
        tenant_id, asset_id, include_trashed=False
    )
    # The cache is looked up in this request's session; only a miss renders (outside it).
    cached = await RenditionService(session, context.storage).find_transform(
        tenant_id, version, spec
    )
    if cached is not None:
        return await rendition_response(request, context.storage, asset, cached)
    made = await _maker(request, context).transform(tenant_id, asset, spec, version=version)
    return await rendition_response(request, context.storage, asset, made.rendition, made.data)


@router.post(
    "/assets/{asset_id}/transform-url",
    response_model=TransformUrlRead,
    summary="A signed URL of an on-the-fly transformation (size, fit, format, quality)",
)
async def create_transform_url(
    asset_id: str,
    principal: Reader,
    context: Context,
    session: ReadSession,
    body: Annotated[TransformUrlCreate, Body()],
) -> TransformUrlRead:
    spec = TransformSpec(body.w, body.h, body.fit, body.fmt, body.q)
    spec.check()
    # Whoever holds the URL fetches without credentials: issuing it is downloading.
    asset = await AssetService(session, context.sniffer).get(principal, asset_id, Action.download)
    ttl = body.expires_in or context.settings.signed_url_ttl_seconds
    expires = int(time.time()) + ttl
    signature = _sign(context, asset.tenant_id, asset.id, spec.key, expires)
    query = "&".join(
        f"{name}={value}"
        for name, value in (
            ("w", spec.width),
            ("h", spec.height),
            ("fit", spec.fit),
            ("fmt", spec.fmt),
            ("q", spec.quality),
            ("expires", expires),
            ("signature", signature),
        )
        if value is not None
    )
    url = _files_url(context, principal.tenant.slug, asset.id, f"transform?{query}")
    return TransformUrlRead(url=url, expires_at=datetime.fromtimestamp(expires, UTC), spec=spec.key)
