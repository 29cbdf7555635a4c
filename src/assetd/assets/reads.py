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
from assetd.assets.models import Access, Asset, AssetKind, AssetState
from assetd.assets.repository import ASSET_COLUMNS, asset_rows_statement, content_row_statement
from assetd.assets.service import (
    MAX_PAGE_SIZE,
    SCAN_INFECTED,
    SCAN_PENDING,
    AssetService,
    ListParams,
)
from assetd.auth.principal import Principal
from assetd.db.session import Database
from assetd.errors import Forbidden, InvalidInput, NotFound, NotReady
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

    The conditions, order, cursor and visibility are built exactly as search() builds them
    (a test holds the two to the same answers); only the page's SELECT differs. The total,
    asked for with X-Total-Count, still goes through the service's session.
    """
    dialect = "sqlite" if db.is_sqlite else "postgresql"
    if not 1 <= params.page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
    if params.page_number < 1:
        raise InvalidInput("pageNumber must be 1 or more")
    where: list[sa.ColumnElement[bool]] = []
    if params.only_trashed:
        where.append(Asset.state == AssetState.trashed)
    elif params.include_trashed:
        where.append(Asset.state.in_([AssetState.active, AssetState.trashed]))
    else:
        where.append(Asset.state == AssetState.active)
    condition = query.compile_query(params.q, service.fields, dialect=dialect)
    if condition is not None:
        where.append(condition)
    keys = query.compile_sort(params.sort, service.fields, dialect=dialect)
    page_where = list(where)
    visible = service.security.visibility_condition(principal)
    if visible is not None:
        page_where.append(visible)
    offset = (params.page_number - 1) * params.page_size
    if params.cursor:
        page_where.append(query.cursor_condition(keys, params.cursor))
        offset = 0
    statement = (
        asset_rows_statement(principal.tenant.id)
        .where(*page_where)
        .order_by(*query.order_by(keys))
        .limit(params.page_size + 1)
        .offset(offset)
    )

    def run(connection: sa.Connection) -> list[sa.Row[Any]]:
        return list(connection.execute(statement).all())

    items = await db.read(run)
    next_cursor = None
    if len(items) > params.page_size:
        items = items[: params.page_size]
        next_cursor = query.encode_cursor(keys, query.sort_values(keys, items[-1]))
    total = None
    if params.with_total:
        visible = service.security.visibility_condition(principal, whole_table=True)
        if visible is not None:
            where.append(visible)
        total = await service.assets.count(principal.tenant.id, where=where)
    return RowPage(items, next_cursor, total)
