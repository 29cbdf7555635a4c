"""Collection use cases: manage collections, their members, and who may see them.

Framework-free: takes a session; flushes, never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.service import AssetList, AssetService, ListParams
from assetd.auth.principal import Principal
from assetd.collections.models import Collection
from assetd.collections.repository import CollectionRepository
from assetd.collections.schemas import (
    MAX_PAGE_SIZE,
    CollectionAssetsAdd,
    CollectionCreate,
    CollectionUpdate,
)
from assetd.db.base import utcnow
from assetd.errors import Conflict, Forbidden, InvalidInput, NotFound, Unprocessable
from assetd.events.models import EventType
from assetd.ids import is_id
from assetd.templates.models import Action
from assetd.templates.service import SecurityTemplateService

log = structlog.get_logger()


class CollectionService:
    def __init__(self, session: AsyncSession, assets: AssetService) -> None:
        self.session = session
        self.repository = CollectionRepository(session)
        self.security = SecurityTemplateService(session)
        self.assets = assets
        self.events = assets.events

    # -- reading ------------------------------------------------------------------------------

    async def get(
        self,
        principal: Principal,
        collection_id: str,
        action: Action = Action.view,
        *,
        lock: bool = False,
    ) -> Collection:
        """The collection if the principal may see it (else 404) and do `action` (else 403)."""
        found = None
        if is_id(collection_id):
            found = await self.repository.get_for(principal.tenant.id, collection_id, lock=lock)
        if found is None:
            raise NotFound(f"collection {collection_id} not found")
        await self._authorize(principal, found, action)
        return found

    async def list_page(
        self, principal: Principal, page_number: int = 1, page_size: int = 100
    ) -> tuple[list[Collection], int]:
        """One page of the collections the principal may see, by name, and how many in all."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
        if page_number < 1:
            raise InvalidInput("pageNumber must be 1 or more")
        where = self._visible(principal)
        tenant_id = principal.tenant.id
        items = await self.repository.page(
            tenant_id, where=where, limit=page_size, offset=(page_number - 1) * page_size
        )
        return items, await self.repository.count(tenant_id, where=where)

    async def search_assets(
        self, principal: Principal, collection_id: str, params: ListParams
    ) -> AssetList:
        """The collection's assets, searched, sorted and paged exactly like /v1/assets."""
        collection = await self.get(principal, collection_id)
        member = self.repository.membership_condition(principal.tenant.id, collection.id)
        return await self.assets.search(principal, params, where=[member])

    # -- changing -----------------------------------------------------------------------------

    async def create(
        self, principal: Principal, data: CollectionCreate, *, collection_id: str | None = None
    ) -> Collection:
        """A new collection; `collection_id` keeps an id from elsewhere (a package)."""
        tenant_id = principal.tenant.id
        if await self.repository.name_taken(tenant_id, data.name):
            raise Conflict(f"a collection named {data.name!r} already exists")
        template_ids = await self.security.check_assignable(principal, data.security_template_ids)
        now = utcnow()
        collection = Collection(
            tenant_id=tenant_id,
            name=data.name,
            description=data.description,
            security_template_ids=template_ids,
            created_at=now,
            created_by=principal.actor,
            modified_at=now,
            modified_by=principal.actor,
        )
        if collection_id is not None:
            collection.id = collection_id
        await self.repository.add(collection)
        if template_ids:
            await self.repository.set_templates(tenant_id, collection.id, template_ids)
        await self._record(principal, EventType.collection_created, collection, name=data.name)
        log.info("collection.created", collection_id=collection.id)
        return collection

    async def update(
        self, principal: Principal, collection_id: str, data: CollectionUpdate
    ) -> Collection:
        collection = await self.get(principal, collection_id, Action.edit, lock=True)
        changes: dict[str, Any] = data.model_dump(exclude_unset=True)
        name = changes.get("name")
        if name is not None and name != collection.name:
            if await self.repository.name_taken(principal.tenant.id, name, except_id=collection.id):
                raise Conflict(f"a collection named {name!r} already exists")
            collection.name = name
        if changes.get("description") is not None:
            collection.description = changes["description"]
        if "security_template_ids" in changes:
            await self._set_templates(principal, collection, data.security_template_ids or [])
        self._touch(principal, collection)
        await self.session.flush()
        await self._record(
            principal, EventType.collection_updated, collection, fields=sorted(changes)
        )
        log.info("collection.updated", collection_id=collection.id, fields=sorted(changes))
        return collection

    async def delete(self, principal: Principal, collection_id: str) -> None:
        """The collection goes; its assets stay."""
        collection = await self.get(principal, collection_id, Action.delete, lock=True)
        await self._record(principal, EventType.collection_deleted, collection)
        await self.repository.delete(collection)
        log.info("collection.deleted", collection_id=collection_id)

    async def add_assets(
        self, principal: Principal, collection_id: str, data: CollectionAssetsAdd
    ) -> int:
        """Add the assets (idempotent): all or none. How many were not members before.

        Every id must name an asset of the tenant that the principal may see, else 422
        listing the ids that do not.
        """
        collection = await self.get(principal, collection_id, Action.edit, lock=True)
        tenant_id = principal.tenant.id
        wanted = list(dict.fromkeys(data.asset_ids))
        well_formed = [a for a in wanted if is_id(a)]
        found = await self.repository.addable_assets(
            tenant_id, well_formed, self.assets.security.visibility_condition(principal)
        )
        missing = [a for a in wanted if a not in found]
        if missing:
            bad = set(missing)
            raise Unprocessable(
                f"{len(missing)} asset id(s) are not assets you can see: "
                + ", ".join(missing[:10])
                + (" …" if len(missing) > 10 else ""),
                errors=[
                    {
                        "field": "assetIds",
                        "loc": ["assetIds", index],
                        "type": "not_found",
                        "msg": f"no such asset: {given}",
                    }
                    for index, given in enumerate(data.asset_ids)
                    if given in bad
                ][:100],
            )
        already = await self.repository.members_among(tenant_id, collection.id, wanted)
        new = [a for a in wanted if a not in already]
        await self.repository.add_members(tenant_id, collection.id, new)
        if new:
            self._touch(principal, collection)
            await self.session.flush()
            await self._record(
                principal, EventType.collection_assets_added, collection, assetIds=new[:1000]
            )
        log.info("collection.assets_added", collection_id=collection.id, added=len(new))
        return len(new)

    async def remove_asset(self, principal: Principal, collection_id: str, asset_id: str) -> None:
        """404 when the asset is not in the collection."""
        collection = await self.get(principal, collection_id, Action.edit, lock=True)
        removed = is_id(asset_id) and await self.repository.remove_member(
            principal.tenant.id, collection.id, asset_id
        )
        if not removed:
            raise NotFound(f"asset {asset_id} is not in collection {collection_id}")
        self._touch(principal, collection)
        await self.session.flush()
        await self.events.record(
            principal,
            EventType.collection_asset_removed,
            asset_id=asset_id,
            details={"collectionId": collection.id},
        )
        log.info("collection.asset_removed", collection_id=collection.id, asset_id=asset_id)

    # -- access -------------------------------------------------------------------------------

    def _visible(self, principal: Principal) -> list[ColumnElement[bool]]:
        if principal.is_admin:
            return []
        return [self.repository.access_condition(principal.tenant.id, principal.roles)]

    async def _authorize(
        self, principal: Principal, collection: Collection, action: Action
    ) -> None:
        # Same rule as assets: no template, open to the tenant; else a grant for a role.
        if principal.is_admin or not collection.security_template_ids:
            return
        actions = await self.repository.actions(
            collection.tenant_id, collection.id, principal.roles
        )
        if actions is None:
            return
        if Action.view not in actions:
            raise NotFound(f"collection {collection.id} not found")
        if action not in actions:
            raise Forbidden(
                f"the collection's security templates do not let your roles {action} it"
            )

    async def _set_templates(
        self, principal: Principal, collection: Collection, given: Sequence[str]
    ) -> None:
        template_ids = await self.security.check_assignable(
            principal, given, current=collection.security_template_ids
        )
        if not template_ids and collection.security_template_ids and not principal.is_admin:
            # With no template left, everybody in the tenant could see the collection.
            raise Forbidden("only an admin can remove every security template from a collection")
        await self.repository.set_templates(principal.tenant.id, collection.id, template_ids)
        collection.security_template_ids = template_ids

    async def _record(
        self, principal: Principal, event_type: EventType, collection: Collection, **details: Any
    ) -> None:
        await self.events.record(
            principal, event_type, details={"collectionId": collection.id, **details}
        )

    def _touch(self, principal: Principal, collection: Collection) -> None:
        collection.modified_at = utcnow()
        collection.modified_by = principal.actor
