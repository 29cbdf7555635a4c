"""The hot read paths (downloads, list pages) as plain rows, without the ORM.

A download or a list page is one SELECT. Through an ORM session on aiosqlite that SELECT
costs about nine thread hand-offs (BEGIN, execute, fetch, COMMIT, …) and ORM hydration on
top, several times the query itself. Here it runs through Database.read(): one hand-off on
SQLite, no BEGIN/COMMIT on either database, and rows of plain values. Everything else about
the answer (404s, scan states, grants, cursors) is decided as in AssetService.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, overload

import anyio.to_thread
import sqlalchemy as sa

from assetd.assets import query
from assetd.assets.models import Access, AssetKind
from assetd.assets.repository import ASSET_COLUMNS, asset_rows_statement, content_row_statement
from assetd.assets.service import (
    SCAN_INFECTED,
    SCAN_PENDING,
    AssetService,
    ListParams,
)
from assetd.auth.principal import Principal
from assetd.db.session import Database
from assetd.errors import Forbidden, NotFound, NotReady
from assetd.ids import is_id

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServedAsset:
    """What serving content needs of an asset; fields in content_row_statement()'s order."""

    id: str
    tenant_id: str
    kind: AssetKind
    access: Access
    version_number: int | None
    security_template_ids: list[str]


@dataclass(frozen=True, slots=True)
class ServedVersion:
    """What serving content needs of a version; fields in VERSION_COLUMNS' order."""

    number: int
    tenant_id: str
    sha256: str
    size_bytes: int
    mime_type: str
    original_name: str
    created_at: datetime
    scan_status: str | None
    scan_result: str | None


Found = tuple[ServedAsset, ServedVersion | None]


@overload
async def find_content(
    db: Database,
    tenant_id: str,
    asset_id: str,
    number: int | None = None,
    *,
    include_trashed: bool = True,
    then: None = None,
) -> Found | None: ...
@overload
async def find_content(
    db: Database,
    tenant_id: str,
    asset_id: str,
    number: int | None = None,
    *,
    include_trashed: bool = True,
    then: Callable[[Found | None], T],
) -> T: ...
async def find_content(
    db: Database,
    tenant_id: str,
    asset_id: str,
    number: int | None = None,
    *,
    include_trashed: bool = True,
    then: Callable[[Found | None], T] | None = None,
) -> Found | None | T:
    """AssetRepository.get_with_version() in one round: the asset and its version `number`
    (None: the current one); None when the asset does not exist for clients.

    then(found), if given, runs in a worker thread (it may block, e.g. to read the bytes),
    and its result is returned: on SQLite in the thread hop of the query itself.
    """
    if not is_id(asset_id):  # a malformed id is simply missing; don't send it to the DB
        return None
    statement = content_row_statement(current=number is None, include_trashed=include_trashed)
    params: dict[str, Any] = {"tenant_id": tenant_id, "asset_id": asset_id}
    if number is not None:
        params["number"] = number

    def run(connection: sa.Connection) -> Found | None:
        row = connection.execute(statement, params).first()
        if row is None:
            return None
        asset = ServedAsset(*row[:6])
        # The version's columns are all NULL when the outer join found no version.
        return asset, None if row[6] is None else ServedVersion(*row[6:])

    if then is None:
        return await db.read(run)
    if db.sync_reader is not None:
        # SQLite reads already run in a worker thread: `then` (the bytes) rides along.
        return await db.read(lambda connection: then(run(connection)))
    found = await db.read(run)
    return await anyio.to_thread.run_sync(then, found)


def needs_grants(principal: Principal, asset: ServedAsset) -> bool:
    """Whether the asset's security templates must be consulted (SecurityTemplateService
    .authorize() passes admins, and everyone on assets without templates, with no query)."""
    return not principal.is_admin and bool(asset.security_template_ids)


def servable(
    found: Found | None, asset_id: str, number: int | None
) -> tuple[ServedAsset, ServedVersion]:
    """AssetService.find_content()'s checks: 404 for what is missing or has no content, 503
    while being scanned, 403 when quarantined."""
    if found is None:
        raise NotFound(f"asset {asset_id} not found")
    asset, version = found
    if asset.kind is AssetKind.LINK:
        raise NotFound(f"asset {asset.id} is a link and has no content; see its url")
    wanted = number if number is not None else asset.version_number
    if wanted is None:
        raise NotFound(f"asset {asset.id} has no content yet")
    if version is None:
        raise NotFound(f"asset {asset.id} has no version {wanted}")
    if version.scan_status == SCAN_PENDING:
        raise NotReady(f"version {version.number} is being scanned for viruses; try again")
    if version.scan_status == SCAN_INFECTED:
        raise Forbidden(
            f"version {version.number} is quarantined: {version.scan_result or 'infected'}"
        )
    return asset, version


# -- lists --------------------------------------------------------------------------------

# The attribute names of a row of ASSET_COLUMNS, in order (row.meta, row.created_at, …).
ROW_KEYS: tuple[str, ...] = tuple(column.key for column in ASSET_COLUMNS)


@dataclass
class RowPage:
    # Rows of ASSET_COLUMNS: they read like Assets by attribute (sort keys rely on it).
    items: list[sa.Row[Any]]
    next_cursor: str | None
    total: int | None


async def search(
    db: Database,
    service: AssetService,
    principal: Principal,
    params: ListParams,
) -> RowPage:
    """AssetService.search() with the page read as plain rows in one round.

    The conditions, order, cursor and visibility come from the same plan_page() as
    search()'s (a test holds the two to the same answers); only the page's SELECT differs.
    The total, asked for with X-Total-Count, still goes through the service's session.
    """
    dialect = "sqlite" if db.is_sqlite else "postgresql"
    plan = service.plan_page(principal, params, dialect=dialect)
    statement = (
        asset_rows_statement(principal.tenant.id)
        .where(*plan.page_where)
        .order_by(*query.order_by(plan.keys))
        .limit(plan.page_size + 1)
        .offset(plan.offset)
    )

    def run(connection: sa.Connection) -> list[sa.Row[Any]]:
        return list(connection.execute(statement).all())

    items, next_cursor = plan.cut(await db.read(run))
    total = await service.count_matching(principal, plan) if params.with_total else None
    return RowPage(items, next_cursor, total)
