"""Export: a selection of assets, and what they depend on, as a package written while it is
sent. Framework-free, like the rest of the package use cases."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.assets.models import Asset, AssetKind, AssetState
from assetd.assets.policy import clean_filename
from assetd.assets.service import AssetService, ListParams, check_servable
from assetd.assets.sniff import Sniffer
from assetd.auth.principal import Principal
from assetd.collections.service import CollectionService
from assetd.config import Settings
from assetd.db.base import utcnow
from assetd.db.session import Database
from assetd.errors import AssetdError, InvalidInput, Unprocessable
from assetd.packages.archive import OutMember, write_zip
from assetd.packages.manifest import FORMAT_VERSION, MANIFEST_PATH, Manifest
from assetd.packages.repository import PackageFactsRepository
from assetd.storage.base import BlobStorage
from assetd.storage.keys import blob_key
from assetd.templates.models import Action
from assetd.templates.service import SecurityTemplateService

log = structlog.get_logger()

MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ExportSelection:
    asset_ids: Sequence[str] = ()
    collection_id: str | None = None
    q: str | None = None
    include_dependencies: bool = True
    name: str = "export"
    version: str = "1.0"
    description: str = ""


@dataclass
class Export:
    filename: str
    asset_count: int
    chunks: Iterator[bytes]


class ExportService:
    def __init__(
        self, db: Database, storage: BlobStorage, sniffer: Sniffer, settings: Settings
    ) -> None:
        self.db = db
        self.storage = storage
        self.sniffer = sniffer
        self.settings = settings

    def _assets(self, session: AsyncSession) -> AssetService:
        # Reading only: no job service, nothing is scheduled.
        return AssetService(session, self.sniffer)

    async def export(self, principal: Principal, selection: ExportSelection) -> Export:
        """The selected assets (and, by default, what they depend on) as a package.

        The rows are read first; the zip is then written while it is sent, reading one
        blob at a time, so memory holds a chunk, not the archive.
        """
        tenant_id = principal.tenant.id
        async with self.db.session(write=False) as session:
            assets = self._assets(session)
            facts = PackageFactsRepository(session)
            security = SecurityTemplateService(session)
            ids = await self._select(session, principal, assets, selection)
            condition = security.visibility_condition(principal, Action.download)
            rows = {
                a.id: a
                for a in await facts.assets(tenant_id, ids, condition)
                if a.state is AssetState.active
            }
            missing = [i for i in ids if i not in rows]
            if missing:
                raise Unprocessable(
                    f"{len(missing)} asset(s) cannot be exported by you: " + ", ".join(missing[:10])
                )
            dependencies = await facts.dependencies(tenant_id, list(rows))
            if selection.include_dependencies:
                await self._add_dependencies(facts, condition, principal, rows, dependencies)
            if len(rows) > self.settings.package_max_export_assets:
                raise InvalidInput(
                    f"the selection holds {len(rows)} assets; one export takes at most "
                    f"{self.settings.package_max_export_assets}"
                )
            versions = {v.asset_id: v for v in await facts.current_versions(tenant_id, rows)}
            for version in versions.values():
                try:
                    check_servable(version)
                except AssetdError as exc:
                    raise type(exc)(f"asset {version.asset_id}: {exc.detail}") from None
            memberships = await facts.memberships(tenant_id, list(rows))
            collection_service = CollectionService(session, assets)
            shown: dict[str, Any] = {}
            for collection_id in sorted({c for cs in memberships.values() for c in cs}):
                try:
                    shown[collection_id] = await collection_service.get(principal, collection_id)
                except AssetdError:
                    continue  # a collection the caller may not see is left out

        entries: list[dict[str, Any]] = []
        out: list[OutMember] = []
        for asset in sorted(rows.values(), key=lambda a: a.id):
            entry: dict[str, Any] = {
                "id": asset.id,
                "kind": asset.kind.value,
                "type": asset.type.value,
                "name": asset.name,
                "description": asset.description,
                "access": asset.access.value,
                "tags": list(asset.tags),
                "refIds": list(asset.ref_ids),
                "metadata": dict(asset.meta),
                "collections": sorted(c for c in memberships.get(asset.id, ()) if c in shown),
                "dependsOn": sorted(dependencies.get(asset.id, ())),
            }
            if asset.kind is AssetKind.LINK:
                entry["url"] = asset.url
            current = versions.get(asset.id)
            if current is not None:
                path = f"files/{asset.id}/{_safe_segment(current.original_name)}"
                entry["file"] = {
                    "path": path,
                    "sha256": current.sha256,
                    "size": current.size_bytes,
                    "filename": current.original_name or None,
                }
                out.append(
                    OutMember(
                        path,
                        current.size_bytes,
                        key=blob_key(tenant_id, current.sha256),
                        compress=_compressible(current.mime_type),
                    )
                )
            entries.append(entry)
        manifest = {
            "formatVersion": FORMAT_VERSION,
            "name": selection.name,
            "version": selection.version,
            "description": selection.description,
            "createdAt": utcnow().isoformat(),
            "createdBy": principal.actor,
            "collections": [
                {"id": c.id, "name": c.name, "description": c.description} for c in shown.values()
            ],
            "entries": entries,
        }
        # Checked like an upload would be, so an export always imports cleanly.
        Manifest.model_validate(manifest)
        data = json.dumps(manifest, ensure_ascii=False, indent=1).encode()
        members = [OutMember(MANIFEST_PATH, len(data), data=data, compress=True), *out]
        log.info("package.exported", assets=len(entries))
        filename = f"{_safe_segment(selection.name)}-{_safe_segment(selection.version)}.zip"
        return Export(filename, len(entries), write_zip(self.storage, members))

    async def _select(
        self,
        session: AsyncSession,
        principal: Principal,
        assets: AssetService,
        selection: ExportSelection,
    ) -> list[str]:
        chosen = [s for s in (selection.asset_ids, selection.collection_id, selection.q) if s]
        if len(chosen) != 1:
            raise InvalidInput("select assets by exactly one of assetIds, collectionId or q")
        if selection.asset_ids:
            return list(dict.fromkeys(selection.asset_ids))
        limit = self.settings.package_max_export_assets
        where = []
        if selection.collection_id is not None:
            collections = CollectionService(session, assets)
            collection = await collections.get(principal, selection.collection_id)
            where.append(
                collections.repository.membership_condition(principal.tenant.id, collection.id)
            )
        found: list[str] = []
        cursor: str | None = None
        while True:
            page = await assets.search(
                principal,
                ListParams(q=selection.q, page_size=MAX_PAGE_SIZE, cursor=cursor, sort="id"),
                where=where,
            )
            found.extend(a.id for a in page.items)
            if len(found) > limit:
                raise InvalidInput(
                    f"the selection holds more than {limit} assets, the most one export takes"
                )
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    async def _add_dependencies(
        self,
        facts: PackageFactsRepository,
        condition: Any,
        principal: Principal,
        rows: dict[str, Asset],
        dependencies: dict[str, set[str]],
    ) -> None:
        """Add what the selection needs, transitively, as far as the caller may see it."""
        frontier = {d for ds in dependencies.values() for d in ds} - set(rows)
        while frontier and len(rows) <= self.settings.package_max_export_assets:
            found = await facts.assets(principal.tenant.id, frontier, condition)
            found = [a for a in found if a.state is AssetState.active]
            if not found:
                return
            for asset in found:
                rows[asset.id] = asset
            more = await facts.dependencies(principal.tenant.id, [a.id for a in found])
            dependencies.update(more)
            frontier = {d for ds in more.values() for d in ds} - set(rows)


_UNSAFE = re.compile(r"[^A-Za-z0-9._\- ]+")


def _safe_segment(name: str) -> str:
    """A zip member segment every unzip accepts: no separators, no leading dots."""
    cleaned = _UNSAFE.sub("_", clean_filename(name)).strip(" .")
    return cleaned[:200] or "content"


def _compressible(mime_type: str) -> bool:
    return mime_type.startswith("text/") or mime_type in {
        "application/json",
        "application/xml",
        "image/svg+xml",
        "application/x-sh",
    }
