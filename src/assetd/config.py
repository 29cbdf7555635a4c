"""Settings: one class, every field an ``ASSETD_*`` environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ASSETD_", extra="ignore")

    data_dir: Path = Field(
        Path("./data"), description="SQLite file and local blob store live here."
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default is sqlite in data_dir. postgresql://… for scale."
    )
    storage_url: str | None = Field(
        None,
        description="file:///path, s3://bucket?endpoint=…&region=…, or memory://; "
        "default data_dir/blobs.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(None, description="Base URL used in links the API hands out.")
    secret_key: SecretStr | None = Field(
        None, description="Signs URLs; generated and kept in data_dir when unset."
    )

    bootstrap_tenant: str | None = None
    bootstrap_api_key: SecretStr | None = None

    max_file_size_bytes: int = 5 * 1024**3
    signed_url_ttl_seconds: int = 3600
    clamd_url: str | None = Field(
        None,
        description="Scan every new version with ClamAV: unix:///run/clamav/clamd.ctl or "
        "tcp://host:3310. Unset: no scanning.",
    )
    upload_part_size_bytes: int = Field(
        100 * 1024**2, description="Part size of presigned multipart uploads (5 MiB..5 GiB)."
    )
    upload_session_ttl_seconds: int = Field(
        24 * 3600, description="How long an upload session and its URLs stay valid."
    )
    upload_cleanup_interval_seconds: float = Field(
        300.0, description="How often `serve` removes expired upload sessions; 0 turns it off."
    )
    webhook_allow_private_targets: bool = Field(
        False,
        description="Let webhooks go to loopback, private, link-local and other non-public "
        "addresses (closed networks, tests). Off: such URLs are refused.",
    )
    blob_grace_seconds: int = 3600
    api_key_cache_seconds: float = 5.0

    jwt_hs256_secret: SecretStr | None = None
    jwt_rs256_public_key: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_tenant_claim: str = "tenant"

    jobs_url: str | None = Field(
        None,
        description="Job broker: sqlite:///path (default data_dir/jobs.db), redis://host:port/db "
        "(scaled), or memory:// (tests); `?queue=name` names the queue.",
    )
    jobs_in_process: bool = Field(
        True, description="`serve` runs jobs itself; false when `assetd worker` processes do."
    )
    jobs_threads: int = Field(2, ge=1, description="Job threads in `serve` or `assetd worker`.")
    jobs_max_attempts: int = Field(5, ge=1, description="Attempts before a job is failed.")
    jobs_lease_seconds: float = Field(
        60.0, gt=0, description="A running job's lease; renewed every third of it."
    )
    jobs_retry_base_seconds: float = Field(
        10.0, ge=0, description="Back-off after a failure: base × 2^(attempt-1), capped."
    )
    jobs_retry_max_seconds: float = Field(900.0, ge=0)
    jobs_retention_days: float = Field(
        30.0,
        ge=0,
        description="`assetd gc` deletes done and failed jobs older than this (0: never).",
    )
    jobs_sweep_interval_seconds: float = Field(
        5.0, ge=0, description="How often lost pushes and lost workers are looked for; 0: never."
    )
    jobs_requeue_after_seconds: float = Field(
        60.0, gt=0, description="A pending job untouched this long is pushed again."
    )
    jobs_shutdown_timeout_seconds: float = Field(
        20.0, ge=0, description="How long shutdown waits for running jobs."
    )
    package_max_bytes: int = Field(
        2 * 1024**3, ge=1, description="Largest package (zip) accepted for upload."
    )
    package_max_members: int = Field(
        20_000, ge=1, description="Most members (files and folders) a package zip may have."
    )
    package_max_uncompressed_bytes: int = Field(
        8 * 1024**3, ge=1, description="Most bytes a package's members may expand to, in all."
    )
    package_max_ratio: int = Field(
        200, ge=1, description="Highest compression ratio of a member over 1 MiB (zip bombs)."
    )
    package_max_export_assets: int = Field(
        10_000, ge=1, description="Most assets one export may hold."
    )
    transform_concurrency: int = Field(
        2, ge=1, description="On-the-fly transformations rendered at once per process."
    )
    # Testing only: registers the test-only job kinds of assetd.jobs.testing.
    test_jobs: bool = False

    provider_local_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Base folders (comma-separated) that local storage providers' roots must "
        "lie in; empty refuses local providers.",
    )

    auto_migrate: bool = Field(
        True, description="Apply database migrations when `assetd serve` starts."
    )
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("provider_local_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def resolved_database_url(self) -> str:
        """The async SQLAlchemy URL to use, defaulting to a SQLite file in data_dir."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'assetd.db').resolve()}"
        return to_async_url(url)

    def resolved_storage_url(self) -> str:
        return self.storage_url or f"file://{(self.data_dir / 'blobs').resolve()}"

    def resolved_jobs_url(self) -> str:
        return self.jobs_url or f"sqlite:///{(self.data_dir / 'jobs.db').resolve()}"

    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


def to_async_url(url: str) -> str:
    """Map plain driver URLs to the async drivers assetd runs on."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+psycopg://"),
        ("postgres://", "postgresql+psycopg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def to_sync_url(url: str) -> str:
    """The same database through a blocking driver, for Alembic and the CLI."""
    return url.replace("sqlite+aiosqlite://", "sqlite://")
