"""Metadata templates, security templates, and the access rule security templates imply.

Framework-free: takes a session; flushes, never commits.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.models import Asset
from assetd.auth.principal import Principal
from assetd.db.base import utcnow
from assetd.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidMetadata,
    NotFound,
    Unprocessable,
)
from assetd.templates.models import Action, MetadataTemplate, SecurityTemplate
from assetd.templates.repository import MetadataTemplateRepository, SecurityTemplateRepository
from assetd.templates.schemas import (
    MAX_PAGE_SIZE,
    Grant,
    MetadataField,
    MetadataTemplateCreate,
    MetadataTemplateUpdate,
    SecurityTemplateCreate,
    SecurityTemplateUpdate,
)
from assetd.templates.validation import validate_metadata

log = structlog.get_logger()

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def normalize_id(value: str) -> str | None:
    """The canonical (lowercase) form of a template id, or None if it is not a uuid."""
    return value.lower() if _UUID.fullmatch(value) else None


def _check_page(page_number: int, page_size: int) -> int:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
    if page_number < 1:
        raise InvalidInput("pageNumber must be 1 or more")
    return (page_number - 1) * page_size


# -- metadata templates --------------------------------------------------------------------


def _stored_fields(fields: Sequence[MetadataField]) -> list[dict[str, Any]]:
    return [f.model_dump(mode="json", by_alias=True, exclude_none=True) for f in fields]


def template_fields(template: MetadataTemplate) -> list[MetadataField]:
    return [MetadataField.model_validate(f) for f in template.fields]


class MetadataTemplateService:
    def __init__(self, session: AsyncSession) -> None:
        self.repository = MetadataTemplateRepository(session)

    async def create(self, tenant_id: str, data: MetadataTemplateCreate) -> MetadataTemplate:
        if await self.repository.name_taken(tenant_id, data.name):
            raise Conflict(f"a metadata template named {data.name!r} already exists")
        now = utcnow()
        template = MetadataTemplate(
            tenant_id=tenant_id,
            name=data.name,
            description=data.description,
            fields=_stored_fields(data.fields),
            created_at=now,
            modified_at=now,
        )
        await self.repository.add(template)
        log.info("metadata_template.created", template_id=template.id)
        return template

    async def get(self, tenant_id: str, template_id: str) -> MetadataTemplate:
        canonical = normalize_id(template_id)
        template = await self.repository.get(tenant_id, canonical) if canonical else None
        if template is None:
            raise NotFound(f"metadata template {template_id} not found")
        return template

    async def list_page(
        self, tenant_id: str, page_number: int = 1, page_size: int = 100
    ) -> tuple[list[MetadataTemplate], int]:
        """One page of the tenant's templates by name, and how many there are in all."""
        offset = _check_page(page_number, page_size)
        items = await self.repository.page(tenant_id, limit=page_size, offset=offset)
        return items, await self.repository.count(tenant_id)

    async def update(
        self, tenant_id: str, template_id: str, data: MetadataTemplateUpdate
    ) -> MetadataTemplate:
        """Assets keep their metadata; it is checked against the new fields when next changed."""
        template = await self._get_locked(tenant_id, template_id)
        changes = data.model_dump(exclude_unset=True)
        if changes.get("name") is not None and changes["name"] != template.name:
            if await self.repository.name_taken(tenant_id, changes["name"], except_id=template.id):
                raise Conflict(f"a metadata template named {changes['name']!r} already exists")
            template.name = changes["name"]
        if changes.get("description") is not None:
            template.description = changes["description"]
        if data.fields is not None:
            template.fields = _stored_fields(data.fields)
        template.modified_at = utcnow()
        await self.repository.session.flush()
        log.info("metadata_template.updated", template_id=template.id, fields=sorted(changes))
        return template

    async def delete(self, tenant_id: str, template_id: str) -> None:
        """Refused (409) while any asset, trashed ones included, uses the template."""
        template = await self._get_locked(tenant_id, template_id)
        if await self.repository.in_use(tenant_id, template.id):
            raise Conflict(f"metadata template {template_id} is used by assets")
        await self.repository.delete(template)
        log.info("metadata_template.deleted", template_id=template_id)

    async def _get_locked(self, tenant_id: str, template_id: str) -> MetadataTemplate:
        canonical = normalize_id(template_id)
        template = await self.repository.get_locked(tenant_id, canonical) if canonical else None
        if template is None:
            raise NotFound(f"metadata template {template_id} not found")
        return template

    async def check_metadata(
        self, tenant_id: str, template_id: str | None, metadata: dict[str, Any] | None
    ) -> str | None:
        """The canonical template id once `metadata` fits the template; None: free-form.

        422 for a template that does not exist in the tenant, and for metadata that does not
        fit: `errors` then lists every wrong field.
        """
        if template_id is None:
            return None
        canonical = normalize_id(template_id)
        template = await self.repository.get_for_use(tenant_id, canonical) if canonical else None
        if template is None:
            raise Unprocessable(
                f"metadata template {template_id} not found",
                errors=[
                    {
                        "field": "metadataTemplateId",
                        "loc": ["metadataTemplateId"],
                        "type": "not_found",
                        "msg": "no such metadata template",
                    }
                ],
            )
        errors = validate_metadata(template_fields(template), metadata or {})
        if errors:
            shown = "; ".join(f"{e.field}: {e.msg}" for e in errors[:5])
            more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
            raise InvalidMetadata(
                f"the metadata does not fit template {template.name!r}: {shown}{more}",
                errors=[e.as_dict() for e in errors],
            )
        return template.id


# -- security templates --------------------------------------------------------------------


@dataclass(frozen=True)
class SecurityTemplateDetail:
    """A security template with its grants, one entry per role."""

    id: str
    name: str
    description: str
    grants: list[Grant]
    created_at: datetime
    modified_at: datetime


def _grant_rows(grants: Sequence[Grant]) -> list[tuple[str, Action]]:
    return [(g.role, action) for g in grants for action in g.actions]


def _grants(rows: Sequence[tuple[str, Action]]) -> list[Grant]:
    by_role: dict[str, set[Action]] = {}
    for role, action in rows:
        by_role.setdefault(role, set()).add(action)
    return [
        Grant(role=role, actions=[a for a in Action if a in actions])
        for role, actions in sorted(by_role.items())
    ]


class SecurityTemplateService:
    def __init__(self, session: AsyncSession) -> None:
        self.repository = SecurityTemplateRepository(session)

    async def create(self, tenant_id: str, data: SecurityTemplateCreate) -> SecurityTemplateDetail:
        if await self.repository.name_taken(tenant_id, data.name):
            raise Conflict(f"a security template named {data.name!r} already exists")
        now = utcnow()
        template = SecurityTemplate(
            tenant_id=tenant_id,
            name=data.name,
            description=data.description,
            created_at=now,
            modified_at=now,
        )
        await self.repository.add(template)
        await self.repository.replace_grants(tenant_id, template.id, _grant_rows(data.grants))
        log.info("security_template.created", template_id=template.id)
        return await self._detail(template)

    async def get(self, tenant_id: str, template_id: str) -> SecurityTemplateDetail:
        canonical = normalize_id(template_id)
        found = await self.repository.get(tenant_id, canonical) if canonical else None
        if found is None:
            raise NotFound(f"security template {template_id} not found")
        return await self._detail(found)

    async def list_page(
        self, tenant_id: str, page_number: int = 1, page_size: int = 100
    ) -> tuple[list[SecurityTemplateDetail], int]:
        """One page of the tenant's templates by name, and how many there are in all."""
        offset = _check_page(page_number, page_size)
        rows = await self.repository.page(tenant_id, limit=page_size, offset=offset)
        grants = await self.repository.grants_of(tenant_id, [t.id for t in rows])
        details = [_detail(t, grants[t.id]) for t in rows]
        return details, await self.repository.count(tenant_id)

    async def update(
        self, tenant_id: str, template_id: str, data: SecurityTemplateUpdate
    ) -> SecurityTemplateDetail:
        """Changed grants apply to every asset carrying the template at once."""
        template = await self._get_locked(tenant_id, template_id)
        changes = data.model_dump(exclude_unset=True)
        if changes.get("name") is not None and changes["name"] != template.name:
            if await self.repository.name_taken(tenant_id, changes["name"], except_id=template.id):
                raise Conflict(f"a security template named {changes['name']!r} already exists")
            template.name = changes["name"]
        if changes.get("description") is not None:
            template.description = changes["description"]
        if data.grants is not None:
            await self.repository.replace_grants(tenant_id, template.id, _grant_rows(data.grants))
        template.modified_at = utcnow()
        await self.repository.session.flush()
        log.info("security_template.updated", template_id=template.id, fields=sorted(changes))
        return await self._detail(template)

    async def delete(self, tenant_id: str, template_id: str) -> None:
        """Refused (409) while any asset, trashed ones included, carries the template."""
        template = await self._get_locked(tenant_id, template_id)
        if await self.repository.in_use(tenant_id, template.id):
            raise Conflict(f"security template {template_id} is carried by assets")
        await self.repository.delete(template)
        log.info("security_template.deleted", template_id=template_id)

    async def _get_locked(self, tenant_id: str, template_id: str) -> SecurityTemplate:
        canonical = normalize_id(template_id)
        template = await self.repository.get_locked(tenant_id, canonical) if canonical else None
        if template is None:
            raise NotFound(f"security template {template_id} not found")
        return template

    async def _detail(self, template: SecurityTemplate) -> SecurityTemplateDetail:
        grants = await self.repository.grants_of(template.tenant_id, [template.id])
        return _detail(template, grants[template.id])

    # -- what a principal may use ----------------------------------------------------------

    async def is_granted(self, principal: Principal, template_id: str) -> bool:
        """Whether the template exists and grants one of the principal's roles anything.

        Such a template is one the principal may assign to assets; admins may assign any.
        """
        canonical = normalize_id(template_id)
        if canonical is None:
            return False
        if principal.is_admin:
            return bool(await self.repository.get_many(principal.tenant.id, [canonical]))
        granted = await self.repository.granted_to(
            principal.tenant.id, principal.roles, template_ids=[canonical]
        )
        return canonical in granted

    async def list_granted(self, principal: Principal) -> list[SecurityTemplateDetail]:
        """The templates the principal may assign (all of them for an admin), by name."""
        tenant_id = principal.tenant.id
        if principal.is_admin:
            total = await self.repository.count(tenant_id)
            rows = await self.repository.page(tenant_id, limit=max(total, 1), offset=0)
        else:
            ids = await self.repository.granted_to(tenant_id, principal.roles)
            rows = sorted(
                await self.repository.get_many(tenant_id, ids), key=lambda t: (t.name, t.id)
            )
        grants = await self.repository.grants_of(tenant_id, [t.id for t in rows])
        return [_detail(t, grants[t.id]) for t in rows]

    async def check_assignable(
        self,
        principal: Principal,
        template_ids: Sequence[str],
        *,
        current: Collection[str] = (),
    ) -> list[str]:
        """The canonical ids, once each exists (else 422) and each one not in `current` is
        granted to the principal (else 403). Held until commit, so none can vanish meanwhile.
        """
        tenant_id = principal.tenant.id
        wanted: dict[str, str] = {}
        unknown: list[str] = []
        for given in template_ids:
            canonical = normalize_id(given)
            if canonical is None:
                unknown.append(given)
            else:
                wanted.setdefault(canonical, given)
        found = {t.id for t in await self.repository.get_many(tenant_id, wanted, for_use=True)}
        unknown.extend(given for canonical, given in wanted.items() if canonical not in found)
        if unknown:
            raise Unprocessable(
                f"security templates not found: {', '.join(unknown[:10])}",
                errors=[
                    {
                        "field": "securityTemplateIds",
                        "loc": ["securityTemplateIds"],
                        "type": "not_found",
                        "msg": f"no such security template: {given}",
                    }
                    for given in unknown[:50]
                ],
            )
        added = [t for t in wanted if t not in current]
        if added and not principal.is_admin:
            granted = await self.repository.granted_to(
                tenant_id, principal.roles, template_ids=added
            )
            refused = [wanted[t] for t in added if t not in granted]
            if refused:
                raise Forbidden(
                    "these security templates grant none of your roles, so you cannot assign "
                    f"them: {', '.join(refused[:10])}"
                )
        return list(wanted)

    async def assign(self, principal: Principal, asset: Asset, template_ids: Sequence[str]) -> None:
        """Give the (flushed) asset exactly these templates, checked by check_assignable()."""
        if not template_ids and asset.security_template_ids and not principal.is_admin:
            # With no template left, everybody in the tenant could see the asset.
            raise Forbidden("only an admin can remove every security template from an asset")
        await self.repository.set_asset_templates(asset.tenant_id, asset.id, template_ids)
        asset.security_template_ids = list(template_ids)

    async def authorize(self, principal: Principal, asset: Asset, action: Action) -> None:
        """404 if the principal may not see the asset, 403 if it may see but not do `action`."""
        # The asset's copy of its template ids spares the query for assets without any.
        if principal.is_admin or not asset.security_template_ids:
            return
        actions = await self.repository.asset_actions(asset.tenant_id, asset.id, principal.roles)
        if actions is None:
            return
        if Action.view not in actions:
            raise NotFound(f"asset {asset.id} not found")
        if action not in actions:
            raise Forbidden(f"the asset's security templates do not let your roles {action} it")

    def visibility_condition(
        self, principal: Principal, action: Action = Action.view, *, whole_table: bool = False
    ) -> ColumnElement[bool] | None:
        """The WHERE clause that keeps lists to what the principal may see; None for admins.

        whole_table=True shapes it for a query that reads every row, such as a count.
        """
        if principal.is_admin:
            return None
        return self.repository.asset_access_condition(
            principal.tenant.id, principal.roles, action, whole_table=whole_table
        )


def _detail(
    template: SecurityTemplate, rows: Sequence[tuple[str, Action]]
) -> SecurityTemplateDetail:
    return SecurityTemplateDetail(
        id=template.id,
        name=template.name,
        description=template.description,
        grants=_grants(rows),
        created_at=template.created_at,
        modified_at=template.modified_at,
    )
