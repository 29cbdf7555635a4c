"""Native upload sessions under /v1/uploads: presigned parts, complete, cancel."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from starlette.requests import ClientDisconnect

from assetd.assets.ingest import ExpectedDigests, _b64_to_hex
from assetd.assets.routes import to_read
from assetd.assets.schemas import VersionRead
from assetd.auth.dependencies import require_scope
from assetd.auth.principal import READ, WRITE, Principal
from assetd.context import AppContext, get_context
from assetd.errors import Forbidden, InvalidInput
from assetd.uploads.models import UploadSession
from assetd.uploads.schemas import (
    PartRead,
    PartTargetRead,
    UploadComplete,
    UploadCreate,
    UploadRead,
    UploadResult,
)
from assetd.uploads.service import ClientPart, PartTarget, UploadService

router = APIRouter(tags=["uploads"])

Reader = Annotated[Principal, Depends(require_scope(READ))]
Writer = Annotated[Principal, Depends(require_scope(WRITE))]
Context = Annotated[AppContext, Depends(get_context)]


def upload_service(context: AppContext) -> UploadService:
    return UploadService(
        context.db,
        context.storage,
        context.sniffer,
        context.signer,
        context.settings,
        context.upload_digests,
        context.job_service,
    )


def upload_read(
    context: AppContext,
    upload: UploadSession,
    *,
    parts: list[PartTarget] | None = None,
    received: list[int] | None = None,
) -> UploadRead:
    base = context.settings.resolved_public_url()
    return UploadRead(
        id=upload.id,
        asset_id=upload.asset_id,
        protocol=upload.protocol,
        state=upload.state,
        filename=upload.filename,
        size_bytes=upload.size_bytes,
        sha256=upload.sha256,
        part_size_bytes=upload.part_size_bytes,
        part_count=upload.part_count,
        offset_bytes=upload.offset_bytes,
        expires_at=upload.expires_at,
        created_at=upload.created_at,
        version=upload.version_number,
        error=upload.error,
        received_parts=received or [],
        parts=[PartTargetRead(number=p.number, size_bytes=p.size_bytes, url=p.url) for p in parts]
        if parts
        else [],
        complete_url=f"{base}/v1/uploads/{upload.id}/complete",
    )


@router.post(
    "/uploads",
    status_code=201,
    response_model=UploadRead,
    summary="Start an upload session: presigned PUT URLs for the file's parts",
)
async def create_upload(data: UploadCreate, principal: Writer, context: Context) -> UploadRead:
    if data.asset_id is not None and data.asset is not None:
        raise InvalidInput("give assetId (a new version) or asset (a new asset), not both")
    ticket = await upload_service(context).create(
        principal,
        filename=data.filename,
        size_bytes=data.size_bytes,
        sha256=data.sha256,
        part_size=data.part_size_bytes,
        asset_id=data.asset_id,
        fields=data.asset,
    )
    return upload_read(context, ticket.upload, parts=ticket.parts)


@router.get("/uploads/{upload_id}", response_model=UploadRead, summary="An upload session")
async def get_upload(upload_id: str, principal: Reader, context: Context) -> UploadRead:
    service = upload_service(context)
    upload, received = await service.get(principal, upload_id)
    parts = None
    if upload.state.value == "open" and upload.protocol.value == "parts":
        # Fresh URLs, so that a client resuming after a restart needs nothing it saved.
        parts = await anyio.to_thread.run_sync(service.part_targets, upload)
    return upload_read(context, upload, parts=parts, received=received)


@router.put(
    "/uploads/{upload_id}/parts/{number}",
    response_model=PartRead,
    summary="Upload one part (local store); the URL comes from the session",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def put_part(
    upload_id: str,
    number: Annotated[int, Path(ge=1, le=10_000)],
    request: Request,
    response: Response,
    context: Context,
    expires: Annotated[int, Query(ge=0, le=2**40)],
    signature: Annotated[str, Query(max_length=128)],
) -> PartRead:
    service = upload_service(context)
    # The URL is the credential: checked before any lookup, like signed download URLs.
    if not service.verify_part_url(upload_id, number, expires, signature):
        raise Forbidden("the part URL's signature is invalid or has expired")
    md5, sha256 = _part_checksums(dict(request.headers))
    try:
        info = await service.receive_part(
            upload_id, number, request.stream(), md5=md5, sha256=sha256
        )
    except ClientDisconnect:
        raise InvalidInput("the client went away before the part was complete") from None
    response.headers["ETag"] = f'"{info.etag}"'
    return PartRead(number=info.number, size_bytes=info.size_bytes, etag=info.etag)


def _part_checksums(headers: dict[str, str]) -> tuple[str | None, str | None]:
    """Content-MD5 (base64), and SHA-256 as S3's x-amz-checksum-sha256 (base64) or in hex."""
    expected = ExpectedDigests.from_headers(headers)
    sha256 = expected.sha256
    if headers.get("x-amz-checksum-sha256"):
        sha256 = _b64_to_hex(headers["x-amz-checksum-sha256"], "x-amz-checksum-sha256")
    if sha256 is not None and len(sha256) != 64:
        raise InvalidInput("the SHA-256 checksum must be 32 bytes")
    if expected.md5 is not None and len(expected.md5) != 32:
        raise InvalidInput("Content-MD5 must be 16 bytes")
    return expected.md5, sha256


@router.post(
    "/uploads/{upload_id}/complete",
    response_model=UploadResult,
    summary="Check the parts (and SHA-256) and turn the upload into a version",
)
async def complete_upload(
    upload_id: str, principal: Writer, context: Context, data: UploadComplete | None = None
) -> UploadResult:
    data = data or UploadComplete()
    parts = None
    if data.parts is not None:
        parts = [ClientPart(p.number, p.etag) for p in data.parts]
    service = upload_service(context)
    asset, version = await service.complete(principal, upload_id, parts, data.sha256)
    upload, received = await service.get(principal, upload_id)
    return _result(context, principal, upload, asset, version, received)


def _result(
    context: AppContext,
    principal: Principal,
    upload: UploadSession,
    asset: Any,
    version: Any,
    received: list[int],
) -> UploadResult:
    return UploadResult(
        upload=upload_read(context, upload, received=received),
        asset=to_read(context, principal.tenant.slug, asset),
        version=VersionRead.model_validate(version).model_copy(update={"is_current": True}),
    )


@router.delete(
    "/uploads/{upload_id}",
    status_code=204,
    summary="Cancel: staged parts deleted, and an asset the session made is removed",
)
async def cancel_upload(upload_id: str, principal: Writer, context: Context) -> Response:
    await upload_service(context).cancel(principal, upload_id)
    return Response(status_code=204)
