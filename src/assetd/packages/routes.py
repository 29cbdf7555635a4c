"""Native package endpoints under /v1: upload → report → install, export, artifacts, and
asset dependencies. HTTP only: parse, authorize, call the service, shape."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool

from assetd.assets.delivery import content_disposition
from assetd.assets.ingest import StagedUpload
from assetd.assets.policy import over_quota, too_large
from assetd.assets.uploads import stream_upload
from assetd.auth.dependencies import require_scope
from assetd.auth.principal import DELETE, INSTALL, READ, WRITE, Principal
from assetd.context import AppContext, get_context
from assetd.errors import InvalidInput
from assetd.packages.export import ExportSelection, ExportService
from assetd.packages.models import Package
from assetd.packages.schemas import (
    MAX_PAGE_SIZE,
    ArtifactRead,
    DependenciesRead,
    DependenciesUpdate,
    ExportRequest,
    InstallRequest,
    PackagePage,
    PackageRead,
    report_of,
)
from assetd.packages.service import InstallOptions, PackageService
from assetd.tenants.service import TenantService

router = APIRouter(tags=["packages"])

Reader = Annotated[Principal, Depends(require_scope(READ))]
Writer = Annotated[Principal, Depends(require_scope(WRITE))]
Deleter = Annotated[Principal, Depends(require_scope(DELETE))]
Installer = Annotated[Principal, Depends(require_scope(INSTALL))]
Context = Annotated[AppContext, Depends(get_context)]

ZIP = "application/zip"
PACKAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            ZIP: {
                "schema": {"type": "string", "format": "binary"},
                "description": "The zip as the raw body; name it with ?filename=.",
            },
        },
    }
}


def package_service(context: AppContext) -> PackageService:
    return PackageService(
        context.db, context.storage, context.sniffer, context.settings, context.job_service
    )


def package_read(package: Package, artifact_url: str | None = None) -> PackageRead:
    return PackageRead(
        id=package.id,
        name=package.name,
        version=package.version,
        format_version=package.format_version,
        description=package.description,
        status=package.status,
        artifact=ArtifactRead(
            id=package.id,
            filename=package.filename,
            size_bytes=package.size_bytes,
            sha256=package.sha256,
            download_url=artifact_url or f"/v1/packages/{package.id}/artifact",
        ),
        report=report_of(package.report),
        created_at=package.created_at,
        created_by=package.created_by,
        installed_at=package.installed_at,
        installed_by=package.installed_by,
    )


async def receive_package(
    request: Request, context: AppContext, principal: Principal, *, file_field: str = "file"
) -> StagedUpload:
    """Stream the zip (multipart `file` field, or the raw body) into staging.

    A package is bounded by the package limit and the tenant's quota, not by the tenant's
    per-file size or extension rules: those apply to each entry, in the report.
    """
    limit, on_limit = context.settings.package_max_bytes, too_large
    quota = principal.tenant.quota_bytes
    if quota is not None:
        async with context.db.session(write=False) as session:
            remaining = max(0, quota - await TenantService(session).used_bytes(principal.tenant.id))
        if remaining < limit:
            limit, on_limit = remaining, over_quota
    _, staged = await stream_upload(
        request, context, limit=limit, on_limit=on_limit, file_field=file_field
    )
    if staged is None:
        raise InvalidInput(f"the form has no {file_field!r} file field")
    return staged


@router.post(
    "/packages",
    status_code=201,
    response_model=PackageRead,
    summary="Upload a package: it is kept as an artifact and reported on; nothing is installed",
    openapi_extra=PACKAGE_BODY,
    responses={422: {"description": "A hostile or broken zip; `problems` lists why."}},
)
async def upload_package(
    request: Request, response: Response, principal: Writer, context: Context
) -> PackageRead:
    staged = await receive_package(request, context, principal)
    package = await package_service(context).upload(principal, staged)
    response.headers["Location"] = f"/v1/packages/{package.id}"
    return package_read(package)


@router.get("/packages", response_model=PackagePage, summary="List packages, newest first")
async def list_packages(
    response: Response,
    principal: Reader,
    context: Context,
    page_number: Annotated[int, Query(alias="pageNumber", ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)] = 100,
) -> PackagePage:
    items, total = await package_service(context).list_page(principal, page_number, page_size)
    response.headers["X-Total-Count"] = str(total)
    return PackagePage(
        items=[package_read(p) for p in items],
        page_number=page_number,
        page_size=page_size,
        total=total,
    )


@router.get("/packages/{package_id}", response_model=PackageRead, summary="A package and report")
async def get_package(package_id: str, principal: Reader, context: Context) -> PackageRead:
    return package_read(await package_service(context).get(principal, package_id))


@router.get(
    "/packages/{package_id}/artifact",
    response_class=StreamingResponse,
    responses={200: {"content": {ZIP: {}}, "description": "The zip as uploaded."}},
    summary="Download the package's zip",
)
async def download_artifact(package_id: str, principal: Reader, context: Context) -> Response:
    package, key = await package_service(context).artifact(principal, package_id)
    return await artifact_response(context, package, key)


async def artifact_response(context: AppContext, package: Package, key: str) -> Response:
    chunks = await anyio.to_thread.run_sync(context.storage.read, key)
    return StreamingResponse(
        iterate_in_threadpool(chunks),
        media_type=ZIP,
        headers={
            "Content-Length": str(package.size_bytes),
            "Content-Disposition": content_disposition(package.filename, ZIP, download=True),
            "ETag": f'"{package.sha256}"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-cache",
        },
    )


@router.post(
    "/packages/{package_id}/install",
    response_model=PackageRead,
    summary="Install a package: every entry or none; installing again changes nothing",
    responses={409: {"description": "Conflicts, errors or unresolved dependencies; `report`."}},
)
async def install_package(
    package_id: str, principal: Installer, context: Context, data: InstallRequest | None = None
) -> PackageRead:
    data = data or InstallRequest()
    options = InstallOptions(
        on_conflict=data.on_conflict,
        ignore_unresolved=data.ignore_unresolved,
        resolutions=dict(data.resolutions),
    )
    package, _ = await package_service(context).install(principal, package_id, options)
    return package_read(package)


@router.delete("/packages/{package_id}", status_code=204, summary="Forget a package")
async def delete_package(package_id: str, principal: Deleter, context: Context) -> Response:
    await package_service(context).delete(principal, package_id)
    return Response(status_code=204)


@router.post(
    "/packages/export",
    response_class=StreamingResponse,
    responses={200: {"content": {ZIP: {}}, "description": "The package, streamed."}},
    summary="Export assets (ids, a collection or a query) as a package",
)
async def export_package(data: ExportRequest, principal: Reader, context: Context) -> Response:
    selection = ExportSelection(
        asset_ids=data.asset_ids,
        collection_id=data.collection_id,
        q=data.q,
        include_dependencies=data.include_dependencies,
        name=data.name,
        version=data.version,
        description=data.description,
    )
    exporter = ExportService(context.db, context.storage, context.sniffer, context.settings)
    export = await exporter.export(principal, selection)
    return StreamingResponse(
        iterate_in_threadpool(export.chunks),
        media_type=ZIP,
        headers={
            "Content-Disposition": content_disposition(export.filename, ZIP, download=True),
            "X-Asset-Count": str(export.asset_count),
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get(
    "/assets/{asset_id}/dependencies",
    response_model=DependenciesRead,
    summary="What an asset depends on, and what depends on it",
)
async def get_dependencies(asset_id: str, principal: Reader, context: Context) -> DependenciesRead:
    depends_on, required_by = await package_service(context).dependencies(principal, asset_id)
    return DependenciesRead(asset_id=asset_id, depends_on=depends_on, required_by=required_by)


@router.put(
    "/assets/{asset_id}/dependencies",
    response_model=DependenciesRead,
    summary="Replace what an asset depends on (exported with it in packages)",
)
async def put_dependencies(
    asset_id: str, data: DependenciesUpdate, principal: Writer, context: Context
) -> DependenciesRead:
    service = package_service(context)
    await service.set_dependencies(principal, asset_id, data.depends_on)
    depends_on, required_by = await service.dependencies(principal, asset_id)
    return DependenciesRead(asset_id=asset_id, depends_on=depends_on, required_by=required_by)
