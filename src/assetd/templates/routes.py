"""Metadata and security templates of the caller's tenant: admins manage, readers read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.auth.dependencies import require_scope
from assetd.auth.principal import ADMIN, READ, Principal
from assetd.db.dependencies import ReadOnly, UnitOfWork
from assetd.templates.schemas import (
    MAX_PAGE_SIZE,
    MetadataTemplateCreate,
    MetadataTemplatePage,
    MetadataTemplateRead,
    MetadataTemplateUpdate,
    SecurityTemplateCreate,
    SecurityTemplatePage,
    SecurityTemplateRead,
    SecurityTemplateUpdate,
)
from assetd.templates.service import MetadataTemplateService, SecurityTemplateService

router = APIRouter()

METADATA = "metadata templates"
SECURITY = "security templates"
Admin = Annotated[Principal, Depends(require_scope(ADMIN))]
Reader = Annotated[Principal, Depends(require_scope(READ))]
Session = Annotated[AsyncSession, UnitOfWork]
ReadSession = Annotated[AsyncSession, ReadOnly]
TemplateId = Annotated[str, Path(description="The template's uuid.")]
PageNumber = Annotated[int, Query(alias="pageNumber", ge=1, le=1_000_000)]
PageSize = Annotated[int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE)]


# -- metadata templates --------------------------------------------------------------------


@router.post(
    "/metadata-templates",
    status_code=201,
    response_model=MetadataTemplateRead,
    tags=[METADATA],
    summary="Create a metadata template",
)
async def create_metadata_template(
    data: MetadataTemplateCreate, response: Response, principal: Admin, session: Session
) -> MetadataTemplateRead:
    template = await MetadataTemplateService(session).create(principal.tenant.id, data)
    response.headers["Location"] = f"/v1/metadata-templates/{template.id}"
    return MetadataTemplateRead.model_validate(template)


@router.get(
    "/metadata-templates",
    response_model=MetadataTemplatePage,
    tags=[METADATA],
    summary="List metadata templates by name",
)
async def list_metadata_templates(
    response: Response,
    principal: Reader,
    session: ReadSession,
    page_number: PageNumber = 1,
    page_size: PageSize = 100,
) -> MetadataTemplatePage:
    items, total = await MetadataTemplateService(session).list_page(
        principal.tenant.id, page_number, page_size
    )
    response.headers["X-Total-Count"] = str(total)
    return MetadataTemplatePage(
        items=[MetadataTemplateRead.model_validate(t) for t in items],
        page_number=page_number,
        page_size=page_size,
        total=total,
    )


@router.get(
    "/metadata-templates/{template_id}",
    response_model=MetadataTemplateRead,
    tags=[METADATA],
    summary="Get a metadata template",
)
async def get_metadata_template(
    template_id: TemplateId, principal: Reader, session: ReadSession
) -> MetadataTemplateRead:
    template = await MetadataTemplateService(session).get(principal.tenant.id, template_id)
    return MetadataTemplateRead.model_validate(template)


@router.patch(
    "/metadata-templates/{template_id}",
    response_model=MetadataTemplateRead,
    tags=[METADATA],
    summary="Change a metadata template; `fields` replaces the whole list",
)
async def update_metadata_template(
    template_id: TemplateId, data: MetadataTemplateUpdate, principal: Admin, session: Session
) -> MetadataTemplateRead:
    template = await MetadataTemplateService(session).update(principal.tenant.id, template_id, data)
    return MetadataTemplateRead.model_validate(template)


@router.delete(
    "/metadata-templates/{template_id}",
    status_code=204,
    response_class=Response,
    tags=[METADATA],
    summary="Delete a metadata template (409 while any asset uses it)",
    responses={409: {"description": "Assets, trashed ones included, still use the template."}},
)
async def delete_metadata_template(
    template_id: TemplateId, principal: Admin, session: Session
) -> Response:
    await MetadataTemplateService(session).delete(principal.tenant.id, template_id)
    return Response(status_code=204)


# -- security templates --------------------------------------------------------------------


@router.post(
    "/security-templates",
    status_code=201,
    response_model=SecurityTemplateRead,
    tags=[SECURITY],
    summary="Create a security template",
)
async def create_security_template(
    data: SecurityTemplateCreate, response: Response, principal: Admin, session: Session
) -> SecurityTemplateRead:
    detail = await SecurityTemplateService(session).create(principal.tenant.id, data)
    response.headers["Location"] = f"/v1/security-templates/{detail.id}"
    return SecurityTemplateRead.model_validate(detail)


@router.get(
    "/security-templates",
    response_model=SecurityTemplatePage,
    tags=[SECURITY],
    summary="List security templates by name",
)
async def list_security_templates(
    response: Response,
    principal: Reader,
    session: ReadSession,
    page_number: PageNumber = 1,
    page_size: PageSize = 100,
) -> SecurityTemplatePage:
    items, total = await SecurityTemplateService(session).list_page(
        principal.tenant.id, page_number, page_size
    )
    response.headers["X-Total-Count"] = str(total)
    return SecurityTemplatePage(
        items=[SecurityTemplateRead.model_validate(t) for t in items],
        page_number=page_number,
        page_size=page_size,
        total=total,
    )


@router.get(
    "/security-templates/{template_id}",
    response_model=SecurityTemplateRead,
    tags=[SECURITY],
    summary="Get a security template",
)
async def get_security_template(
    template_id: TemplateId, principal: Reader, session: ReadSession
) -> SecurityTemplateRead:
    detail = await SecurityTemplateService(session).get(principal.tenant.id, template_id)
    return SecurityTemplateRead.model_validate(detail)


@router.patch(
    "/security-templates/{template_id}",
    response_model=SecurityTemplateRead,
    tags=[SECURITY],
    summary="Change a security template; `grants` replaces every grant",
)
async def update_security_template(
    template_id: TemplateId, data: SecurityTemplateUpdate, principal: Admin, session: Session
) -> SecurityTemplateRead:
    detail = await SecurityTemplateService(session).update(principal.tenant.id, template_id, data)
    return SecurityTemplateRead.model_validate(detail)


@router.delete(
    "/security-templates/{template_id}",
    status_code=204,
    response_class=Response,
    tags=[SECURITY],
    summary="Delete a security template (409 while any asset carries it)",
    responses={409: {"description": "Assets, trashed ones included, still carry the template."}},
)
async def delete_security_template(
    template_id: TemplateId, principal: Admin, session: Session
) -> Response:
    await SecurityTemplateService(session).delete(principal.tenant.id, template_id)
    return Response(status_code=204)
