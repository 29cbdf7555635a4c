"""Run Alembic migrations programmatically (``assetd migrate`` and the test set-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from assetd.config import to_sync_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would eat a '%' in a password.
    config.set_main_option("sqlalchemy.url", to_sync_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(_sync_driver(url)), revision)


def _sync_driver(url: str) -> str:
    url = to_sync_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url
