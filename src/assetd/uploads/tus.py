"""tus 1.0.0 resumable uploads at /v1/tus: core, creation, creation-with-upload, termination,
checksum and expiration (https://tus.io/protocols/resumable-upload).

A tus upload is an upload session of protocol "tus": its asset is made (metadata-only) at
creation, and the PATCH that brings the last byte turns the bytes into its version.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import format_datetime
from typing import Annotated, Any, ParamSpec

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from assetd.assets.schemas import AssetFields
from assetd.auth.dependencies import authenticate, presented_token
from assetd.auth.principal import WRITE, Principal
from assetd.context import AppContext, get_context
from assetd.db.base import utcnow
from assetd.errors import (
    AssetdError,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    Unauthenticated,
)
from assetd.problems import problem, status_for
from assetd.uploads.models import UploadProtocol, UploadSession, UploadState
from assetd.uploads.routes import upload_service
from assetd.uploads.service import ChecksumMismatch, TusChecksum

router = APIRouter(tags=["tus"])

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
CHECKSUM_ALGORITHMS = {"sha1": 20, "sha256": 32}
OFFSET_TYPE = "application/offset+octet-stream"
MAX_METADATA_BYTES = 16 * 1024
# Upload-Metadata keys that set asset fields; the rest are kept on the session only.
_FIELD_KEYS = {"name", "description", "access", "type", "segmentId"}

Context = Annotated[AppContext, Depends(get_context)]
P = ParamSpec("P")


def tus_endpoint(handler: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Every tus answer, errors included, carries Tus-Resumable; errors stay problem+json."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            response = await handler(*args, **kwargs)
        except AssetdError as exc:
            response = _error(exc)
        response.headers["Tus-Resumable"] = TUS_VERSION
        response.headers["Cache-Control"] = "no-store"
        return response

    return wrapper


def _error(exc: AssetdError) -> Response:
    if isinstance(exc, ChecksumMismatch):
        return problem(460, "Checksum mismatch", exc.detail)
    response = problem(status_for(exc), exc.title, exc.detail, **exc.extra)
    if isinstance(exc, _VersionMismatch):
        response.headers["Tus-Version"] = TUS_VERSION
    return response


async def tus_principal(request: Request, context: Context) -> Principal:
    """Credentials as everywhere else, and the protocol version tus requires on each request."""
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise _VersionMismatch()
    token = presented_token(request)
    if token is None:
        raise Unauthenticated("credentials required: 'Authorization: Bearer …' or 'X-API-Key'")
    principal = await authenticate(context, token)
    if not principal.has(WRITE):
        raise Forbidden(f"this operation needs the {WRITE!r} scope")
    return principal


class _VersionMismatch(PreconditionFailed):
    def __init__(self) -> None:
        super().__init__(f"Tus-Resumable must be {TUS_VERSION}")


@router.options("/tus", status_code=204, summary="tus: what this server supports")
@router.options("/tus/{upload_id}", status_code=204, include_in_schema=False)
async def tus_options(context: Context) -> Response:
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(context.settings.max_file_size_bytes),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        },
    )


@router.post("/tus", status_code=201, summary="tus: create an upload (optionally with bytes)")
@tus_endpoint
async def tus_create(request: Request, context: Context) -> Response:
    principal = await tus_principal(request, context)
    if request.headers.get("upload-defer-length"):
        raise InvalidInput("Upload-Defer-Length is not supported: send Upload-Length")
    length = _non_negative(request.headers.get("upload-length"), "Upload-Length")
    metadata = parse_metadata(request.headers.get("upload-metadata", ""))
    fields = _asset_fields(metadata)
    filename = metadata.get("filename") or metadata.get("name") or "upload"
    sha256 = metadata.get("sha256")
    if sha256 is not None and (len(sha256) != 64 or not _is_hex(sha256)):
        raise InvalidInput("the sha256 metadata value must be 64 hex digits")
    service = upload_service(context)
    ticket = await service.create(
        principal,
        filename=filename,
        size_bytes=length,
        sha256=sha256.lower() if sha256 else None,
        asset_id=metadata.get("assetId"),
        fields=None if metadata.get("assetId") else fields,
        protocol=UploadProtocol.tus,
        upload_metadata=metadata,
    )
    upload = ticket.upload
    location = f"{context.settings.resolved_public_url()}/v1/tus/{upload.id}"
    headers = {"Location": location, "X-Asset-Id": ticket.asset.id, **_expiry(upload)}
    with_upload = request.headers.get("content-type", "").lower() == OFFSET_TYPE
    # Clients send no PATCH for an empty file (tus-js-client, tuspy): nothing would ever
    # complete it, so the creation does.
    if with_upload or length == 0:
        # creation-with-upload: a failure of these first bytes still leaves a usable upload.
        try:
            upload, version = await _append(
                request, context, principal, upload.id, 0, with_body=with_upload
            )
        except AssetdError as exc:
            failed = _error(exc)
            failed.headers.update(headers)
            return failed
        headers["Upload-Offset"] = str(upload.offset_bytes)
        if version is not None:
            headers["X-Asset-Version"] = str(version.number)
    return Response(status_code=201, headers=headers)


@router.head("/tus/{upload_id}", summary="tus: how many bytes the server has")
@tus_endpoint
async def tus_head(upload_id: str, request: Request, context: Context) -> Response:
    principal = await tus_principal(request, context)
    upload, _ = await upload_service(context).get(principal, upload_id)
    _check_tus(upload)
    _check_not_ended(upload)
    headers = {
        "Upload-Offset": str(upload.offset_bytes),
        "Upload-Length": str(upload.size_bytes),
        **_expiry(upload),
    }
    if upload.upload_metadata:
        headers["Upload-Metadata"] = format_metadata(upload.upload_metadata)
    if upload.asset_id:
        headers["X-Asset-Id"] = upload.asset_id
    return Response(status_code=200, headers=headers)


@router.patch(
    "/tus/{upload_id}",
    status_code=204,
    summary="tus: append bytes at Upload-Offset",
    openapi_extra={
        "requestBody": {"content": {OFFSET_TYPE: {"schema": {"type": "string"}}}},
    },
)
@tus_endpoint
async def tus_patch(upload_id: str, request: Request, context: Context) -> Response:
    principal = await tus_principal(request, context)
    if request.headers.get("content-type", "").lower() != OFFSET_TYPE:
        return problem(415, "Unsupported media type", f"Content-Type must be {OFFSET_TYPE}")
    offset = _non_negative(request.headers.get("upload-offset"), "Upload-Offset")
    upload, version = await _append(request, context, principal, upload_id, offset)
    headers = {"Upload-Offset": str(upload.offset_bytes), **_expiry(upload)}
    if version is not None:
        headers["X-Asset-Version"] = str(version.number)
    if upload.asset_id:
        headers["X-Asset-Id"] = upload.asset_id
    return Response(status_code=204, headers=headers)


@router.delete("/tus/{upload_id}", status_code=204, summary="tus: terminate an upload")
@tus_endpoint
async def tus_delete(upload_id: str, request: Request, context: Context) -> Response:
    principal = await tus_principal(request, context)
    service = upload_service(context)
    upload, _ = await service.get(principal, upload_id)
    _check_tus(upload)
    await service.cancel(principal, upload_id)
    return Response(status_code=204)


async def _append(
    request: Request,
    context: AppContext,
    principal: Principal,
    upload_id: str,
    offset: int,
    *,
    with_body: bool = True,
) -> tuple[UploadSession, Any]:
    checksum = parse_checksum(request.headers.get("upload-checksum")) if with_body else None
    chunks = request.stream() if with_body else _no_bytes()
    try:
        return await upload_service(context).append(principal, upload_id, offset, chunks, checksum)
    except ClientDisconnect:
        raise InvalidInput("the client went away") from None


async def _no_bytes() -> AsyncIterator[bytes]:
    yield b""  # as an empty request body streams


def _check_tus(upload: UploadSession) -> None:
    if upload.protocol is not UploadProtocol.tus:
        # A parts session is not a tus upload: answer as tus answers unknown ids.
        raise NotFound(f"upload {upload.id} not found")


def _check_not_ended(upload: UploadSession) -> None:
    # Terminated, failed or expired: tus wants 404 or 410 here, never an offset to resume at.
    # A completed upload still answers, so that a client resuming it sees it is done.
    ended = upload.state in (UploadState.cancelled, UploadState.expired, UploadState.failed)
    if ended or (upload.state is UploadState.open and upload.expires_at <= utcnow()):
        raise Gone(f"upload {upload.id} has ended")


def _expiry(upload: UploadSession) -> dict[str, str]:
    return {"Upload-Expires": format_datetime(upload.expires_at, usegmt=True)}


def _non_negative(value: str | None, header: str) -> int:
    # isascii: str.isdigit() also takes digits such as "²" that int() refuses.
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 19:
        raise InvalidInput(f"{header} must be a non-negative integer")
    return int(value)


def _is_hex(value: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in value)


def parse_metadata(header: str) -> dict[str, str]:
    """Upload-Metadata: comma-separated `key base64value` pairs (the value may be absent)."""
    if len(header) > MAX_METADATA_BYTES:
        raise InvalidInput(f"Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes")
    metadata: dict[str, str] = {}
    for item in header.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, encoded = item.partition(" ")
        if not key or " " in encoded.strip() or not key.isascii() or not key.isprintable():
            raise InvalidInput(f"Upload-Metadata item {item[:40]!r} is not 'key base64value'")
        if key in metadata:
            raise InvalidInput(f"Upload-Metadata names {key!r} twice")
        try:
            value = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidInput(f"Upload-Metadata value of {key!r} is not base64 UTF-8") from None
        if "\x00" in value:
            raise InvalidInput(f"Upload-Metadata value of {key!r} contains a NUL character")
        metadata[key] = value
    return metadata


def format_metadata(metadata: dict[str, Any]) -> str:
    return ",".join(
        f"{key} {base64.b64encode(str(value).encode()).decode()}" for key, value in metadata.items()
    )


def _asset_fields(metadata: dict[str, str]) -> AssetFields:
    values: dict[str, Any] = {k: v for k, v in metadata.items() if k in _FIELD_KEYS}
    if "access" in values:
        values["access"] = values["access"].upper()
    if metadata.get("tags"):
        values["tags"] = [t.strip() for t in metadata["tags"].split(",") if t.strip()]
    try:
        return AssetFields.model_validate(values)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise InvalidInput("Upload-Metadata has invalid asset fields", errors=errors) from None


def parse_checksum(header: str | None) -> TusChecksum | None:
    """Upload-Checksum: `<algorithm> <base64 digest>`; unknown algorithms are a 400."""
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    size = CHECKSUM_ALGORITHMS.get(algorithm.lower())
    if size is None:
        raise InvalidInput(
            f"Upload-Checksum algorithm must be one of {', '.join(CHECKSUM_ALGORITHMS)}"
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise InvalidInput("Upload-Checksum digest must be base64") from None
    if len(digest) != size:
        raise InvalidInput(f"an {algorithm} digest is {size} bytes")
    return TusChecksum(algorithm.lower(), digest)
