"""The compiled query language against a real database: exact rows, order and cursor paging."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from assetd.assets.models import Access, Asset, AssetKind, AssetState, AssetType
from assetd.assets.query import (
    NATIVE_FIELDS,
    SortKey,
    compile_query,
    compile_sort,
    cursor_condition,
    encode_cursor,
    order_by,
    register_sqlite_functions,
    sort_values,
)
from assetd.db.session import Database
from assetd.errors import QueryError
from assetd.tenants.models import Tenant

pytestmark = pytest.mark.anyio

T0 = datetime(2021, 5, 18, 7, 27, 27, 455000, tzinfo=UTC)
HOUR = timedelta(hours=1)
SEED_FIELDS = NATIVE_FIELDS | {
    "details.filename": NATIVE_FIELDS["filename"],
    "details.bytes": NATIVE_FIELDS["size"],
}

# name -> column values; every row also gets id "q<name>" padded, so ids sort like names.
ROWS: dict[str, dict[str, Any]] = {
    "alpha": {
        "type": AssetType.image,
        "size_bytes": 100,
        "tags": ["red", "big"],
        "ref_ids": [{"id": "p1", "type": "product"}],
        "meta": {
            "color": {"primary": "red"},
            "n": 5,
            "flag": True,
            "when": "2021-05-19T00:00:00.000Z",
            "label": "AB CD",
            "list": [1],
        },
        "description": "First asset",
        "created_at": T0,
        "mime_type": "image/png",
        "filename": "alpha.png",
        "extension": "png",
        "created_by": "ann",
        "segment_id": "s1",
        "sha256": "a" * 64,
    },
    "beta": {
        "type": AssetType.document,
        "access": Access.PRIVATE,
        "size_bytes": 200,
        "tags": ["blue"],
        "ref_ids": [{"id": "p2", "type": "category"}, {"id": "p1", "type": "category"}],
        "meta": {
            "color": {"primary": "blue"},
            "n": "5",
            "flag": False,
            "when": "2021-05-21T00:00:00.000Z",
            "obj": {"a": 1},
        },
        "description": 'Says "hi"',
        "created_at": T0 + 24 * HOUR,
        "mime_type": "application/pdf",
        "filename": "beta.pdf",
        "extension": "pdf",
        "created_by": "bob",
        "segment_id": "s1",
        "revision": 3,
        "version_number": 2,
    },
    "gamma": {
        "type": AssetType.image,
        "kind": AssetKind.LINK,
        "url": "https://example.com/g",
        "created_at": T0 + 48 * HOUR,
    },
    "delta": {
        "type": AssetType.video,
        "state": AssetState.pending,
        "size_bytes": 150,
        "tags": ["red", "small"],
        "meta": {"n": 12.5, "color": "plain", "empty": "", "list": [], "obj": {}, "nul": None},
        "description": "Clip\n",
        "created_at": T0 + HOUR,
        "mime_type": "video/mp4",
        "filename": "clip.mp4",
        "segment_id": "",
    },
    "ab cd": {
        "type": AssetType.audio,
        "access": Access.PRIVATE,
        "size_bytes": 250,
        "tags": ["AB CD"],
        "ref_ids": [{"id": "x", "type": "AB CD"}],
        "meta": {"n": -3},
        "description": "has AB CD inside",
        "created_at": T0 + 2 * HOUR,
        "filename": "ab cd.mp3",
        "segment_id": "s2",
    },
    "epsilon": {
        "type": AssetType.image,
        "state": AssetState.trashed,
        "size_bytes": 0,
        "tags": ["x"],
        "meta": {"n": 1000, "color": {"primary": "green"}},
        "created_at": T0 + 72 * HOUR,
        "trashed_at": T0 + 73 * HOUR,
        "mime_type": "image/jpeg",
        "filename": "e.jpg",
        "segment_id": "s2",
    },
    "zeta": {
        "type": AssetType.other,
        "access": Access.PRIVATE,
        "size_bytes": 99,
        "tags": ["Red"],
        "ref_ids": [{"id": "P1", "type": "product"}],
        "meta": {"n": [1, 2], "flag": "true", "color": {"primary": "Red"}},
        "created_at": T0,
        "filename": "",
        "segment_id": "s3",
    },
}
ALL = set(ROWS)


def asset_id(name: str) -> str:
    return ("q" + name.replace(" ", "_")).ljust(24, "0")


def new_asset(tenant_id: str, name: str, **values: Any) -> Asset:
    defaults: dict[str, Any] = {
        "id": asset_id(name),
        "tenant_id": tenant_id,
        "name": name,
        "kind": AssetKind.BLOB,
        "type": AssetType.image,
        "access": Access.PUBLIC,
        "state": AssetState.active,
        "created_at": T0,
    }
    asset = Asset(**(defaults | values))
    asset.modified_at = asset.created_at + timedelta(minutes=5)
    return asset


def _register(dbapi_connection: Any, _record: Any) -> None:
    register_sqlite_functions(dbapi_connection)


@pytest.fixture
async def database(db: Database) -> Database:
    # The app's engine set-up does this; here the test wires it the same way.
    if db.is_sqlite:
        sa.event.listen(db.engine.sync_engine, "connect", _register)
    return db


@pytest.fixture
async def tenants(database: Database) -> dict[str, str]:
    """Tenant "acme" holds ROWS; "other" holds a look-alike that must never show up."""
    async with database.session() as session:
        acme, other = Tenant(slug="acme"), Tenant(slug="other")
        session.add_all([acme, other])
        await session.flush()
        session.add_all(new_asset(acme.id, name, **values) for name, values in ROWS.items())
        session.add(new_asset(other.id, "intruder", **ROWS["alpha"]))
        return {"acme": acme.id, "other": other.id}


async def names(
    database: Database, tenant_id: str, q: str, fields: Any = NATIVE_FIELDS
) -> set[str]:
    async with database.session(write=False) as session:
        dialect = session.get_bind().dialect.name
        statement = sa.select(Asset.name).where(Asset.tenant_id == tenant_id)
        condition = compile_query(q, fields, dialect=dialect)
        if condition is not None:
            statement = statement.where(condition)
        return set((await session.execute(statement)).scalars())


CASES: list[tuple[str, set[str]]] = [
    ("", ALL),
    # Enums, exact and in any case.
    ("access:PUBLIC", {"alpha", "gamma", "delta", "epsilon"}),
    ("access:public", {"alpha", "gamma", "delta", "epsilon"}),
    ("type:image", {"alpha", "gamma", "epsilon"}),
    ("type:(image,VIDEO)", {"alpha", "gamma", "epsilon", "delta"}),
    ("kind:LINK", {"gamma"}),
    ("state:trashed", {"epsilon"}),
    ("type:image access:PUBLIC state:active", {"alpha", "gamma"}),
    ("type:~^(au|vi)", {"ab cd", "delta"}),
    # Strings: exact and case-sensitive; quotes for spaces and quotes.
    ("name:alpha", {"alpha"}),
    ("name:Alpha", set()),
    ("name:alp", set()),
    ('name:"ab cd"', {"ab cd"}),
    ('description:"Says \\"hi\\""', {"beta"}),
    (f"id:({asset_id('alpha')},{asset_id('beta')})", {"alpha", "beta"}),
    (f"id:{asset_id('zeta')} access:PRIVATE", {"zeta"}),
    (f"id:{asset_id('zeta')} access:PUBLIC", set()),
    ("description:null", {"gamma", "epsilon", "zeta"}),
    ("description:exists", {"alpha", "beta", "delta", "ab cd"}),
    ("segmentId:null", {"gamma", "delta"}),
    ("segmentId:(s1,s3)", {"alpha", "beta", "zeta"}),
    ("url:exists", {"gamma"}),
    ("createdBy:ann", {"alpha"}),
    ("createdBy:null", ALL - {"alpha", "beta"}),
    ("extension:png", {"alpha"}),
    ("sha256:exists", {"alpha"}),
    ('name:"null"', set()),
    # Regexes: unanchored, case-sensitive unless (?i), spaces inside parentheses or quotes.
    ("name:~(?i)ALPHA", {"alpha"}),
    ("name:~^(alpha|beta)$", {"alpha", "beta"}),
    ("name:(~b c)", {"ab cd"}),
    ("name:(zeta,~^al)", {"zeta", "alpha"}),
    ('description:~"AB CD"', {"ab cd"}),
    # PostgreSQL's reading on both: "$" is the very end, "." matches a newline.
    ("description:~Clip$", set()),
    ("description:~p.$", {"delta"}),
    ("mimeType:~^image/", {"alpha", "epsilon"}),
    ("filename:~\\.pdf$", {"beta"}),
    (f"id:~^{asset_id('gamma')[:4]}", {"gamma"}),
    # Numbers: comparisons, ranges, floats against an integer column, null.
    ("size:200", {"beta"}),
    ("size:>150", {"beta", "ab cd"}),
    ("size:<100", {"epsilon", "zeta"}),
    ("size:>=150", {"delta", "beta", "ab cd"}),
    ("size:<=100", {"alpha", "epsilon", "zeta"}),
    ("size:(>=100 AND <=200)", {"alpha", "beta", "delta"}),
    ("size:(<1,>240)", {"epsilon", "ab cd"}),
    ("size:99.5", set()),
    ("size:>99.5", {"alpha", "beta", "delta", "ab cd"}),
    ("size:<99.5", {"epsilon", "zeta"}),
    ("size:>99999999999999999999", set()),
    ("size:null", {"gamma"}),
    ("size:exists", ALL - {"gamma"}),
    ("revision:3", {"beta"}),
    ("version:2", {"beta"}),
    ("metadata.version:>1", {"beta"}),
    # Dates: quoted or not, exact to the millisecond, system metadata fields.
    ('createdAt:>"2021-05-19T00:00:00Z"', {"beta", "gamma", "epsilon"}),
    ('createdAt:"2021-05-18T07:27:27.455Z"', {"alpha", "zeta"}),
    ("createdAt:<=2021-05-18T08:27:27.455Z", {"alpha", "zeta", "delta"}),
    ('createdAt:>="2021-05-18T09:27:27.455+02:00"', ALL),
    (
        'metadata.createdAt:(>="2021-05-18T07:27:27.455Z" AND <"2021-05-18T09:27:27.455Z")',
        {"alpha", "zeta", "delta"},
    ),
    ("modifiedAt:<2021-05-18T07:33:00Z", {"alpha", "zeta"}),
    ('metadata.modifiedAt:>"2021-05-21"', {"epsilon"}),
    ("trashedAt:exists", {"epsilon"}),
    ("trashedAt:null", ALL - {"epsilon"}),
    # Arrays.
    ("tags:red", {"alpha", "delta"}),
    ("tags:(blue,small)", {"beta", "delta"}),
    ("tags:~^R", {"zeta"}),
    ('tags:"AB CD"', {"ab cd"}),
    ("tags:(~B C)", {"ab cd"}),
    ("tags:null", {"gamma"}),
    ("tags:exists", ALL - {"gamma"}),
    ("refIds.id:p1", {"alpha", "beta"}),
    ("refIds.type:product", {"alpha", "zeta"}),
    ("refIds.id:(p2,x)", {"beta", "ab cd"}),
    ("refIds.type:(~AB CD)", {"ab cd"}),
    ("refIds.id:~(?i)^p1$", {"alpha", "beta", "zeta"}),
    ("refIds:exists", {"alpha", "beta", "ab cd", "zeta"}),
    ("refIds:null", {"gamma", "delta", "epsilon"}),
    ("refIds.id:exists", {"alpha", "beta", "ab cd", "zeta"}),
    ("refIds.type:null", {"gamma", "delta", "epsilon"}),
    # Custom metadata JSON paths.
    ("metadata.color.primary:red", {"alpha"}),
    ("metadata.color.primary:~(?i)^red$", {"alpha", "zeta"}),
    ("metadata.color:plain", {"delta"}),
    ("metadata.color:exists", {"alpha", "beta", "delta", "epsilon", "zeta"}),
    ("metadata.color:null", {"gamma", "ab cd"}),
    ("metadata.n:5", {"alpha", "beta"}),
    ('metadata.n:"5"', {"beta"}),
    ("metadata.n:>4", {"alpha", "delta", "epsilon"}),
    ("metadata.n:<0", {"ab cd"}),
    ("metadata.n:(>=5 AND <=12.5)", {"alpha", "delta"}),
    ("metadata.n:12.5", {"delta"}),
    ("metadata.n:~5", {"beta"}),
    ("metadata.n:exists", ALL - {"gamma"}),
    ("metadata.n:null", {"gamma"}),
    ("metadata.flag:true", {"alpha", "zeta"}),
    ('metadata.flag:"true"', {"zeta"}),
    ("metadata.flag:false", {"beta"}),
    ('metadata.when:>"2021-05-20"', {"beta"}),
    ('metadata.when:<"2021-05-20"', {"alpha"}),
    ("metadata.label:(~AB CD)", {"alpha"}),
    ("metadata.list:exists", {"alpha"}),
    ("metadata.obj:exists", {"beta"}),
    ("metadata.empty:null", ALL),
    ("metadata.nul:null", ALL),
    ("metadata.nul:exists", set()),
    ("metadata.color.primary.deeper:null", ALL),
    ("metadata:null", {"gamma"}),
    ("metadata:exists", ALL - {"gamma"}),
]


@pytest.mark.parametrize(("q", "expected"), CASES)
async def test_filter_returns_exactly(
    database: Database, tenants: dict[str, str], q: str, expected: set[str]
) -> None:
    assert await names(database, tenants["acme"], q) == expected


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("details.bytes:(>=100 AND <=200)", {"alpha", "beta", "delta"}),
        ("details.filename:null", {"gamma", "zeta"}),
        ("details.filename:~^a", {"alpha", "ab cd"}),
    ],
)
async def test_seed_aliases(
    database: Database, tenants: dict[str, str], q: str, expected: set[str]
) -> None:
    assert await names(database, tenants["acme"], q, SEED_FIELDS) == expected


async def test_other_tenant_rows_never_match(database: Database, tenants: dict[str, str]) -> None:
    assert await names(database, tenants["other"], "") == {"intruder"}
    assert await names(database, tenants["other"], "name:alpha") == set()


async def test_regexp_on_sqlite_is_ours(database: Database, tenants: dict[str, str]) -> None:
    if not database.is_sqlite:
        pytest.skip("SQLite only")
    async with database.session(write=False) as session:
        # SQLAlchemy's own regexp() raises on a non-string; ours answers NULL.
        assert (await session.execute(sa.text("SELECT 1 REGEXP 'a'"))).scalar() is None


# --- sorting ------------------------------------------------------------------------------


async def sorted_names(database: Database, tenant_id: str, sort: str | None) -> list[str]:
    async with database.session(write=False) as session:
        keys = compile_sort(sort, dialect=session.get_bind().dialect.name)
        statement = (
            sa.select(Asset.name).where(Asset.tenant_id == tenant_id).order_by(*order_by(keys))
        )
        return list((await session.execute(statement)).scalars())


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        (None, ["epsilon", "gamma", "beta", "ab cd", "delta", "zeta", "alpha"]),
        ("size", ["epsilon", "zeta", "alpha", "delta", "beta", "ab cd", "gamma"]),
        ("size:desc", ["ab cd", "beta", "delta", "alpha", "zeta", "epsilon", "gamma"]),
        ("createdAt,name:desc", ["zeta", "alpha", "delta", "ab cd", "beta", "gamma", "epsilon"]),
        ("segmentId:desc,name", ["zeta", "ab cd", "epsilon", "alpha", "beta", "delta", "gamma"]),
        ("segmentId,name:desc", ["delta", "beta", "alpha", "epsilon", "ab cd", "zeta", "gamma"]),
        ("metadata.n", ["ab cd", "alpha", "delta", "epsilon", "beta", "gamma", "zeta"]),
        ("metadata.n:desc", ["epsilon", "delta", "alpha", "ab cd", "beta", "zeta", "gamma"]),
        (
            "type,metadata.color.primary:desc",
            ["ab cd", "beta", "alpha", "epsilon", "gamma", "zeta", "delta"],
        ),
        (
            "name,metadata.createdAt:desc",
            ["ab cd", "alpha", "beta", "delta", "epsilon", "gamma", "zeta"],
        ),
    ],
)
async def test_sort_order_is_the_same_on_every_database(
    database: Database, tenants: dict[str, str], sort: str | None, expected: list[str]
) -> None:
    assert await sorted_names(database, tenants["acme"], sort) == expected


# --- cursor paging --------------------------------------------------------------------------


def paging_rows(tenant_id: str) -> list[Asset]:
    """36 rows with ties, NULLs and mixed JSON types on every sortable column used below."""
    rows = []
    for i in range(36):
        n: Any = {0: None, 1: f"v{i % 3}"}.get(i % 6, (i % 4) * 1.5)
        rows.append(
            new_asset(
                tenant_id,
                f"p{i:02d}",
                type=list(AssetType)[i % 3],
                size_bytes=None if i % 5 == 0 else (i % 7) * 10,
                created_at=T0 + (i // 4) * HOUR + timedelta(microseconds=i % 2),
                segment_id=None if i % 3 == 0 else f"s{i % 4}",
                meta={} if n is None else {"n": n},
            )
        )
    return rows


def python_order(keys: Sequence[SortKey], rows: Sequence[Asset]) -> list[str]:
    """The order the database must produce: key by key, NULLs last in both directions."""

    def compare(left: Asset, right: Asset) -> int:
        for key, a, b in zip(keys, sort_values(keys, left), sort_values(keys, right), strict=True):
            if a == b:
                continue
            if a is None or b is None:
                return 1 if a is None else -1
            result = -1 if a < b else 1
            return -result if key.descending else result
        return 0

    return [row.name for row in sorted(rows, key=functools.cmp_to_key(compare))]


SORTS = [
    None,
    "size",
    "size:desc,createdAt",
    "segmentId,size:desc",
    "segmentId:desc,type,size",
    "metadata.n:desc,name",
    "metadata.n,createdAt:desc",
    "type,createdAt:desc,size",
    "createdAt:desc,name",
    "name:desc",
]


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("page_size", [1, 5])
async def test_cursor_walks_every_row_once(
    database: Database, sort: str | None, page_size: int
) -> None:
    async with database.session() as session:
        tenant = Tenant(slug="pager")
        session.add(tenant)
        await session.flush()
        rows = paging_rows(tenant.id)
        session.add_all(rows)
    async with database.session(write=False) as session:
        keys = compile_sort(sort, dialect=session.get_bind().dialect.name)
        base = sa.select(Asset).where(Asset.tenant_id == tenant.id).order_by(*order_by(keys))
        everything = [a.name for a in (await session.execute(base)).scalars()]
        assert everything == python_order(keys, rows)

        walked: list[str] = []
        cursor: str | None = None
        for _ in range(len(rows) + 2):
            statement = base.limit(page_size)
            if cursor is not None:
                statement = statement.where(cursor_condition(keys, cursor))
            page = list((await session.execute(statement)).scalars())
            if not page:
                break
            walked.extend(a.name for a in page)
            cursor = encode_cursor(keys, sort_values(keys, page[-1]))
        assert walked == everything
        assert len(set(walked)) == len(rows) == 36


async def test_cursor_with_a_filter_and_another_sort(
    database: Database, tenants: dict[str, str]
) -> None:
    async with database.session(write=False) as session:
        dialect = session.get_bind().dialect.name
        keys = compile_sort("size", dialect=dialect)
        condition = compile_query("type:image", dialect=dialect)
        assert condition is not None
        statement = (
            sa.select(Asset)
            .where(Asset.tenant_id == tenants["acme"], condition)
            .order_by(*order_by(keys))
        )
        first = (await session.execute(statement.limit(1))).scalars().one()
        cursor = encode_cursor(keys, sort_values(keys, first))
        rest = (await session.execute(statement.where(cursor_condition(keys, cursor)))).scalars()
        assert [first.name, *(a.name for a in rest)] == ["epsilon", "alpha", "gamma"]
        with pytest.raises(QueryError, match="another sort order"):
            cursor_condition(compile_sort("size:desc", dialect=dialect), cursor)


# --- plans ----------------------------------------------------------------------------------


async def test_list_query_uses_a_tenant_state_index(
    database: Database, tenants: dict[str, str]
) -> None:
    async with database.session(write=False) as session:
        dialect = session.get_bind().dialect
        keys = compile_sort(None, dialect=dialect.name)
        condition = compile_query("type:image", dialect=dialect.name)
        assert condition is not None
        statement = (
            sa.select(Asset.id)
            .where(Asset.tenant_id == tenants["acme"], Asset.state == AssetState.active, condition)
            .order_by(*order_by(keys))
            .limit(60)
        )
        sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        if database.is_sqlite:
            plan_rows = await session.execute(sa.text("EXPLAIN QUERY PLAN " + sql))
            plan = "\n".join(str(row[-1]) for row in plan_rows)
        else:
            # With a few rows a sequential scan is cheapest; ask whether an index is usable.
            await session.execute(sa.text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(r[0] for r in await session.execute(sa.text("EXPLAIN " + sql)))
    print(f"\n{dialect.name} plan for type:image, createdAt desc:\n{plan}")
    # Either the type index (then a sort on the id tie-breaker) or the created index (ordered,
    # filtering type as it walks) is fine; a full scan of assets is not.
    assert "ix_assets_tenant_state_" in plan
    assert "SCAN assets" not in plan
