"""Shared fixtures: a real database (SQLite or PostgreSQL) migrated once per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from assetd.db.migrate import upgrade
from assetd.db.session import Database

# The S3 server (moto on 127.0.0.1) and store fixtures, shared by the contract suite and the
# API tests that run on S3.
pytest_plugins = ["tests.s3_fixtures"]

TEST_DATABASE = os.environ.get("ASSETD_TEST_DATABASE", "sqlite")
POSTGRES_ADMIN_URL = os.environ.get(
    "ASSETD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _postgres_or_skip() -> sa.Engine:
    engine = sa.create_engine(
        POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    return engine


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A freshly migrated database for this test session."""
    if TEST_DATABASE == "postgres":
        admin = _postgres_or_skip()
        name = f"assetd_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
        upgrade(url)
        yield url.replace("postgresql://", "postgresql+psycopg://")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    else:
        path: Path = tmp_path_factory.mktemp("db") / "assetd.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        yield url.replace("sqlite://", "sqlite+aiosqlite://")


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The test database; every table is emptied after the test."""
    database = Database(database_url)
    try:
        yield database
    finally:
        await _truncate(database)
        await database.dispose()


async def _truncate(database: Database) -> None:
    from assetd.db.base import Base

    async with database.engine.begin() as conn:
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        if database.is_sqlite:
            for table in tables:
                await conn.exec_driver_sql(f'DELETE FROM "{table}"')
        else:
            await conn.exec_driver_sql(
                "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"
            )


# -- the application under test ---------------------------------------------------------

import httpx  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from assetd.app import create_app  # noqa: E402
from assetd.config import Settings  # noqa: E402
from assetd.storage.local import LocalBlobStorage  # noqa: E402
from assetd.storage.s3 import S3BlobStorage  # noqa: E402
from tests.factories import TenantCredentials, make_tenant  # noqa: E402


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        storage_url=f"file://{tmp_path / 'blobs'}",
        secret_key="test-secret-test-secret-test-secret",  # type: ignore[arg-type]
        public_url="http://testserver",
        api_key_cache_seconds=0,
        # The tests' webhook receivers listen on 127.0.0.1 (events.targets refuses it).
        webhook_allow_private_targets=True,
    )


@pytest.fixture
async def app(db: Database, settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def storage(app: FastAPI) -> LocalBlobStorage:
    store = app.state.context.storage
    assert isinstance(store, LocalBlobStorage)
    return store


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def tenant(db: Database) -> TenantCredentials:
    return await make_tenant(db, "acme")


@pytest.fixture
async def other_tenant(db: Database) -> TenantCredentials:
    return await make_tenant(db, "globex")


@pytest.fixture
def server_database(database_url: str) -> Iterator[str | None]:
    """The database a real `assetd serve` of the test uses (see shared_database)."""
    from tests.server import shared_database

    with shared_database(database_url) as url:
        yield url


@pytest.fixture
async def s3_client(
    db: Database, settings: Settings, s3_storage: S3BlobStorage
) -> AsyncIterator[httpx.AsyncClient]:
    """The API on the S3 blob store (moto's S3 server on 127.0.0.1)."""
    app: FastAPI = create_app(settings, storage=s3_storage)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
