"""assets.metadata, tags and ref_ids as jsonb on PostgreSQL (migration 0012).

The query language compiles metadata equality to containment (@>) on jsonb. These tests hold
that form to the json form it replaces, value by value, and check the migration both ways.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from assetd.assets.query import Field, FieldKind, compile_query
from assetd.db.migrate import upgrade
from assetd.db.session import Database
from tests.conftest import POSTGRES_ADMIN_URL, TEST_DATABASE, _postgres_or_skip

pytestmark = pytest.mark.anyio

# Every document sits in a json and a jsonb column of the same row.
DOCUMENTS: list[Any] = [
    {"c": "spring"},
    {"c": "Spring"},
    {"c": "spring "},
    {"c": "spr\u00e9ng"},
    {"c": 'say "hi" \\ there'},
    {"c": "5"},
    {"c": 5},
    {"c": 5.0},
    {"c": 5.5},
    {"c": -0.0},
    {"c": 12345678901234567890},
    {"c": 1e20},
    {"c": True},
    {"c": "true"},
    {"c": False},
    {"c": None},
    {"c": ""},
    {"c": ["spring"]},
    {"c": ["spring", "x"]},
    {"c": [True]},
    {"c": {"spring": "spring"}},
    {"c": {"d": "spring"}},
    {"c": {"d": "spring", "e": 1}},
    {"c": {"d": ["spring"]}},
    {"c": [{"d": "spring"}]},
    {"c": {"d": {"e": "spring"}}},
    {"c": {"d": True}},
    {"d": "spring"},
    {"C": "spring"},
    {},
    ["spring"],
    [{"c": "spring"}],
    "spring",
    5,
    True,
    None,
]

VALUES = [
    "spring",
    "Spring",
    '"spring"',
    '"spring "',
    "spr\u00e9ng",
    '"say \\"hi\\" \\\\ there"',
    "5",
    '"5"',
    "5.0",
    "5.5",
    "-0",
    "0",
    "12345678901234567890",
    "1e20",
    "true",
    '"true"',
    "false",
    "TRUE",
    "x",
    '""',
    "null",
    "exists",
    "~^spr",
    ">4",
    '<"t"',
]

PATHS = ["c", "c.d", "c.d.e", "d", "c.spring"]

ARRAYS: list[Any] = [
    [],
    ["red"],
    ["red", "Red"],
    ["AB CD"],
    [1, "1"],
    [["red"]],
    [{"id": "p1", "type": "product"}],
    [{"id": "p1"}, {"id": "P1", "type": "x"}],
    [{"id": ["p1"]}],
    [{"id": 1}],
    {"id": "p1"},
    "red",
    None,
    {},
]

ARRAY_QUERIES = [
    "tags:red",
    "tags:Red",
    "tags:1",
    'tags:"AB CD"',
    "tags:(red,x)",
    "tags:~^R",
    "tags:null",
    "tags:exists",
    "refIds.id:p1",
    "refIds.id:1",
    "refIds.type:x",
    "refIds.id:~(?i)p",
    "refIds.id:null",
    "refIds.id:exists",
    "refIds:null",
    "refIds:exists",
]

probe = sa.Table(
    "jsonb_probe",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("doc_json", postgresql.JSON),
    sa.Column("doc_jsonb", postgresql.JSONB),
)


def _fields(column: str, path: str) -> dict[str, Field]:
    column_ = probe.c[column]
    return {
        "metadata": Field(FieldKind.JSON_OBJECT, column_),
        f"metadata.{path}": Field(
            FieldKind.JSON,
            column_,
            path=tuple(path.split(".")),
        ),
        "tags": Field(FieldKind.STRING_ARRAY, column_),
        "refIds": Field(FieldKind.REFIDS, column_),
        "refIds.id": Field(FieldKind.REFIDS, column_, element_key="id"),
        "refIds.type": Field(
            FieldKind.REFIDS,
            column_,
            element_key="type",
        ),
    }


async def _matches(
    connection: Any, q: str, documents: list[Any], path: str = "c"
) -> tuple[set[int], set[int]]:
    """(ids matching q on the json column, ids matching it on the jsonb column)."""
    found = []
    for column in ("doc_json", "doc_jsonb"):
        condition = compile_query(q, _fields(column, path), dialect="postgresql")
        assert condition is not None
        rows = await connection.execute(sa.select(probe.c.id).where(condition))
        found.append({row[0] for row in rows})
    return found[0], found[1]


@pytest.fixture
async def pg_connection(db: Database) -> Any:
    if db.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite has one JSON type")
    async with db.engine.connect() as connection:
        await connection.run_sync(lambda sync: probe.create(sync))
        yield connection
        await connection.rollback()


async def _load(connection: Any, documents: list[Any]) -> None:
    await connection.execute(
        probe.insert(),
        [{"id": i, "doc_json": d, "doc_jsonb": d} for i, d in enumerate(documents)],
    )


async def test_metadata_values_match_the_same_rows_on_json_and_jsonb(pg_connection: Any) -> None:
    await _load(pg_connection, DOCUMENTS)
    compared = 0
    for path in PATHS:
        for value in VALUES:
            q = f"metadata.{path}:{value}"
            on_json, on_jsonb = await _matches(pg_connection, q, DOCUMENTS, path)
            assert on_jsonb == on_json, (q, sorted(on_json), sorted(on_jsonb))
            compared += bool(on_json)
    # Not a vacuous comparison: many of these queries match something.
    assert compared > 20
    on_json, on_jsonb = await _matches(pg_connection, "metadata.c:spring", DOCUMENTS)
    assert on_jsonb == on_json == {0}
    on_json, on_jsonb = await _matches(pg_connection, "metadata.c:5", DOCUMENTS)
    assert on_jsonb == on_json == {5, 6, 7}


async def test_arrays_match_the_same_rows_on_json_and_jsonb(pg_connection: Any) -> None:
    await _load(pg_connection, ARRAYS)
    for q in ARRAY_QUERIES:
        on_json, on_jsonb = await _matches(pg_connection, q, ARRAYS)
        assert on_jsonb == on_json, (q, sorted(on_json), sorted(on_jsonb))
    for q in ("metadata:null", "metadata:exists"):
        on_json, on_jsonb = await _matches(pg_connection, q, ARRAYS)
        assert on_jsonb == on_json, q


def test_metadata_equality_on_jsonb_is_containment() -> None:
    condition = compile_query("metadata.campaign:spring", dialect="postgresql")
    assert condition is not None
    sql = str(condition.compile(dialect=postgresql.psycopg.dialect()))
    assert "assets.metadata @> CAST(" in sql
    assert "CASE" not in sql
    assert "json_typeof" not in sql
    # SQLite keeps its own form.
    sqlite_sql = str(compile_query("metadata.campaign:spring", dialect="sqlite"))
    assert "json_type" in sqlite_sql
    assert "@>" not in sqlite_sql


# --- the migration, both ways ------------------------------------------------------------


@pytest.fixture
def scratch_url(tmp_path: Path) -> Iterator[str]:
    """An empty database of the kind under test, for migrating up and down."""
    if TEST_DATABASE != "postgres":
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    admin = _postgres_or_skip()
    name = f"assetd_jsonb_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


ROW = {
    "metadata": {"campaign": "spring", "n": 1.5, "nested": {"ok": True}, "list": [1, "a"]},
    "tags": ["red", "AB CD"],
    "ref_ids": [{"id": "p1", "type": "product"}],
}


def _types_and_row(engine: sa.Engine) -> tuple[dict[str, str], dict[str, Any]]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            types = dict(
                conn.execute(
                    sa.text(
                        "SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_name = 'assets' AND column_name IN "
                        "('metadata', 'tags', 'ref_ids', 'facts')"
                    )
                ).all()
            )
        else:
            types = {}
        row = conn.execute(sa.text("SELECT metadata, tags, ref_ids FROM assets")).one()
    values = {
        key: json.loads(value) if isinstance(value, str) else value
        for key, value in zip(("metadata", "tags", "ref_ids"), row, strict=True)
    }
    return types, values


def test_migration_converts_both_ways_and_keeps_the_values(scratch_url: str) -> None:
    sync_url = scratch_url.replace("postgresql://", "postgresql+psycopg://")
    upgrade(scratch_url, "0011_packages")
    engine = sa.create_engine(sync_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO tenants (id, slug, name, used_bytes, created_at) "
                    "VALUES ('t1', 't1', 't1', 0, CURRENT_TIMESTAMP)"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO assets (id, tenant_id, kind, type, access, state, name, "
                    "description, tags, ref_ids, metadata, revision, created_at, modified_at) "
                    "VALUES ('a1', 't1', 'BLOB', 'image', 'PUBLIC', 'active', 'a', '', "
                    ":tags, :ref_ids, :metadata, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {key: json.dumps(value) for key, value in ROW.items()},
            )
        before_types, before = _types_and_row(engine)
        assert before == ROW

        upgrade(scratch_url, "0012_jsonb")
        types, values = _types_and_row(engine)
        assert values == ROW
        if engine.dialect.name == "postgresql":
            assert before_types == dict.fromkeys(("metadata", "tags", "ref_ids", "facts"), "json")
            assert types == {"metadata": "jsonb", "tags": "jsonb", "ref_ids": "jsonb"} | {
                "facts": "json"
            }

        from alembic import command

        from assetd.db.migrate import alembic_config

        command.downgrade(alembic_config(sync_url), "0011_packages")
        types, values = _types_and_row(engine)
        assert values == ROW
        assert types == before_types

        upgrade(scratch_url)
        _, values = _types_and_row(engine)
        assert values == ROW
    finally:
        engine.dispose()
