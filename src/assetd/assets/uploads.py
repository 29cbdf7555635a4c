"""Turn an upload request (multipart or raw body) into staged, verified bytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import unquote

from fastapi import Request
from pydantic import ValidationError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect

from assetd.assets.ingest import ExpectedDigests, Ingest, StagedUpload
from assetd.assets.multipart import decode_header_value, read_multipart
from assetd.assets.policy import (
    check_extension,
    clean_filename,
    extension_of,
    over_quota,
    size_limit,
    too_large,
)
from assetd.assets.schemas import AssetFields
from assetd.auth.principal import Principal
from assetd.context import AppContext
from assetd.errors import AssetdError, InvalidInput
from assetd.tenants.service import TenantService


async def upload_limit(context: AppContext, principal: Principal) -> tuple[int, bool]:
    """Bytes this upload may have, and whether the quota (not the size limit) sets it."""
    tenant = principal.tenant
    limit = size_limit(tenant, context.settings.max_file_size_bytes)
    if tenant.quota_bytes is None:
        return limit, False
    async with context.db.session(write=False) as session:
        used = await TenantService(session).used_bytes(tenant.id)
    remaining = max(0, tenant.quota_bytes - used)
    return (remaining, True) if remaining < limit else (limit, False)


def raw_filename(request: Request) -> str:
    """A raw-body upload names its file in ?filename=, X-Filename or Content-Disposition."""
    if request.query_params.get("filename"):
        return request.query_params["filename"]
    if request.headers.get("x-filename"):
        return unquote(request.headers["x-filename"])
    disposition = request.headers.get("content-disposition")
    if disposition:
        _, params = parse_options_header(disposition)
        if b"filename" in params:
            return decode_header_value(params[b"filename"])
    return ""


async def receive_upload(
    request: Request,
    context: AppContext,
    principal: Principal,
    *,
    file_field: str = "file",
    size_limit: int | None = None,
) -> tuple[dict[str, str], StagedUpload | None]:
    """Stream the body into staging; the form's text fields come back beside the bytes."""
    limit, by_quota = await upload_limit(context, principal)
    if size_limit is not None and size_limit < limit:
        limit, by_quota = size_limit, False

    def check_name(filename: str) -> None:
        check_extension(principal.tenant, extension_of(clean_filename(filename)))

    return await stream_upload(
        request,
        context,
        limit=limit,
        on_limit=over_quota if by_quota else too_large,
        file_field=file_field,
        check_name=check_name,
    )


async def stream_upload(
    request: Request,
    context: AppContext,
    *,
    limit: int,
    on_limit: Callable[[int], AssetdError],
    file_field: str = "file",
    check_name: Callable[[str], None] | None = None,
) -> tuple[dict[str, str], StagedUpload | None]:
    """The body (multipart, or raw with the name in ?filename=) through an Ingest into
    staging, at most `limit` bytes; `check_name` may refuse the file's name, as early as the
    body allows: before reading a raw body, after the part of a multipart one."""
    expected = ExpectedDigests.from_headers(dict(request.headers))
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        # Clearly too big: refuse before reading, the multipart framing can't be 64 KiB.
        raise on_limit(limit)

    def make_ingest() -> Ingest:
        return Ingest(context.storage, limit_bytes=limit, on_limit=on_limit, expected=expected)

    content_type = request.headers.get("content-type", "")
    try:
        if content_type.lower().startswith("multipart/form-data"):
            form = await read_multipart(
                request.stream(), content_type, make_ingest, file_field=file_field
            )
            if form.staged is not None and check_name is not None:
                await _check_name(check_name, form.staged)
            return form.fields, form.staged
        filename = clean_filename(raw_filename(request))
        if check_name is not None:
            check_name(filename)
        ingest = make_ingest()
        try:
            async for chunk in request.stream():
                await ingest.feed(chunk)
        except BaseException:
            await ingest.abort()
            raise
        return {}, await ingest.finish(filename)
    except ClientDisconnect:
        raise InvalidInput("the client went away before the upload finished") from None


async def _check_name(check: Callable[[str], None], staged: StagedUpload) -> None:
    try:
        check(staged.filename)
    except AssetdError:
        await staged.discard()
        raise


def parse_fields(raw: str | None) -> AssetFields:
    """The `meta` form field: the asset's descriptive fields as JSON."""
    if not raw:
        return AssetFields()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"the meta field is not valid JSON: {exc}") from None
    try:
        return AssetFields.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise InvalidInput("the meta field is invalid", errors=errors) from None


@asynccontextmanager
async def discard_on_error(staged: StagedUpload | None) -> AsyncIterator[None]:
    """Drop staged bytes if the block fails before a service has taken them over."""
    try:
        yield
    except BaseException:
        if staged is not None and not staged.published:
            await staged.discard()
        raise
