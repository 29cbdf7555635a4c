"""`assetd` command line: run the server, administer the database, use the API."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TransferSpeedColumn
from rich.table import Column, Table

from assetd.config import Settings
from assetd.logging import configure_logging

app = typer.Typer(no_args_is_help=True, help="assetd: a multi-tenant digital asset service.")
tenant_app = typer.Typer(no_args_is_help=True, help="Manage tenants.")
key_app = typer.Typer(no_args_is_help=True, help="Manage API keys.")
package_app = typer.Typer(no_args_is_help=True, help="Upload, install and export packages.")
app.add_typer(tenant_app, name="tenant")
app.add_typer(key_app, name="key")
app.add_typer(package_app, name="package")
console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def main() -> None:
    app()


def _run(factory: Callable[[Settings], Awaitable[T]]) -> T:
    settings = Settings()

    async def runner() -> T:
        return await factory(settings)

    return anyio.run(runner)


def _migrate(settings: Settings) -> None:
    from assetd.db.migrate import upgrade

    if settings.database_url is None:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url())


def create_app_from_env() -> Any:
    """uvicorn factory for `serve`: each worker process builds its own app."""
    import gc

    from assetd.app import create_app

    app = create_app(Settings())
    # What the imports and the app made lives as long as the process: keep it out of the
    # cyclic GC's full passes, which otherwise walk it all (~270k objects, 66 ms a pass).
    gc.freeze()
    return app


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (ASSETD_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (ASSETD_PORT).")] = None,
    workers: Annotated[int, typer.Option(help="Processes serving requests.")] = 1,
) -> None:
    """Start the HTTP server (migrating and bootstrapping an empty database first)."""
    from assetd.app import signing_secret
    from assetd.db.session import Database
    from assetd.tenants.bootstrap import bootstrap

    if host:
        os.environ["ASSETD_HOST"] = host
    if port:
        os.environ["ASSETD_PORT"] = str(port)
    settings = Settings()
    if settings.auto_migrate:
        _migrate(settings)

    async def first_start(settings: Settings) -> None:
        db = Database(settings.resolved_database_url())
        try:
            created = await bootstrap(db, settings)
        finally:
            await db.dispose()
        if created is not None:
            console.print(f"[bold]Created tenant[/bold] {created.tenant_slug}")
            if created.key_was_generated:
                console.print(f"[bold]Admin API key[/bold] (shown once): {created.api_key}")

    _run(first_start)
    signing_secret(settings)  # created here, once, before any worker process starts
    if workers == 1:
        _serve(settings, workers=1, loop="auto")
        return
    from assetd.serving import BOARD_ENV, ConnectionBoard

    # The workers share one socket; assetd's loop spreads its connections across them.
    with ConnectionBoard.shared(workers) as board:
        os.environ[BOARD_ENV] = board
        _serve(settings, workers=workers, loop="assetd.serving:worker_loop")


def _serve(settings: Settings, *, workers: int, loop: str) -> None:
    import uvicorn

    uvicorn.run(
        "assetd.cli:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        loop=loop,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=True,
    )


@app.command()
def worker(
    threads: Annotated[
        int | None, typer.Option(help="Job threads (ASSETD_JOBS_THREADS).", min=1)
    ] = None,
) -> None:
    """Run background jobs from the broker (scaled shape; `serve` runs them itself otherwise)."""
    from assetd.jobs.worker import run_worker

    # No migration here: the schema is the API servers' (or `assetd migrate`'s) business.
    settings = Settings()
    run_worker(settings, threads or settings.jobs_threads)


@app.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the latest."""
    _migrate(Settings())
    console.print("database is up to date")


@tenant_app.command("create")
def tenant_create(
    slug: str,
    name: str = "",
    max_file_size: Annotated[int | None, typer.Option(help="Bytes per file.")] = None,
    quota: Annotated[int | None, typer.Option(help="Bytes in all.")] = None,
    allowed_extension: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    allowed_type: Annotated[list[str] | None, typer.Option(help="Asset type or MIME.")] = None,
) -> None:
    """Create a tenant."""
    from assetd.tenants.schemas import TenantCreate
    from assetd.tenants.service import TenantService

    data = _guard(
        lambda: TenantCreate(
            slug=slug,
            name=name,
            max_file_size_bytes=max_file_size,
            quota_bytes=quota,
            allowed_extensions=allowed_extension,
            allowed_types=allowed_type,
        )
    )

    async def create(settings: Settings) -> str:
        from assetd.db.session import Database

        db = Database(settings.resolved_database_url())
        try:
            async with db.session() as session:
                tenant = await TenantService(session).create(data)
                return tenant.id
        finally:
            await db.dispose()

    console.print(f"created tenant {slug} ({_guard(lambda: _run(create))})")


@tenant_app.command("list")
def tenant_list() -> None:
    """List tenants with their usage."""
    from assetd.db.session import Database
    from assetd.tenants.service import TenantService

    async def rows(settings: Settings) -> list[tuple[str, str, int, int | None]]:
        db = Database(settings.resolved_database_url())
        try:
            async with db.session(write=False) as session:
                tenants = await TenantService(session).list_all()
                return [(t.slug, t.id, t.used_bytes, t.quota_bytes) for t in tenants]
        finally:
            await db.dispose()

    table = Table("slug", _id_column(), "used bytes", "quota bytes")
    for slug, tid, used, quota in _run(rows):
        table.add_row(slug, tid, str(used), "-" if quota is None else str(quota))
    console.print(table)


async def _with_tenant_session(
    settings: Settings, slug: str, action: Callable[[Any, str], Awaitable[T]]
) -> T:
    from assetd.db.session import Database
    from assetd.tenants.service import TenantService

    db = Database(settings.resolved_database_url())
    try:
        async with db.session() as session:
            tenant = await TenantService(session).get_by_slug(slug)
            return await action(session, tenant.id)
    finally:
        await db.dispose()


@key_app.command("create")
def key_create(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    name: str = "",
    scope: Annotated[
        list[str] | None, typer.Option(help="Repeatable; default read+write+delete.")
    ] = None,
    expires_in_days: Annotated[int | None, typer.Option()] = None,
    role: Annotated[
        list[str] | None, typer.Option(help="Repeatable; roles for security templates.")
    ] = None,
) -> None:
    """Create an API key; the secret is printed once."""
    from assetd.auth.service import ApiKeyService

    scopes = scope or ["assets:read", "assets:write", "assets:delete"]
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None

    async def create(session: Any, tenant_id: str) -> tuple[str, str]:
        row, secret = await ApiKeyService(session).create(
            tenant_id, name=name, scopes=scopes, roles=role or [], expires_at=expires
        )
        return row.id, secret

    key_id, secret = _guard(lambda: _run(lambda s: _with_tenant_session(s, tenant, create)))
    console.print(f"key id {key_id}")
    console.print(secret)


@key_app.command("list")
def key_list(tenant: Annotated[str, typer.Option(help="Tenant slug.")]) -> None:
    """List a tenant's API keys (never their secrets)."""
    from assetd.auth.service import ApiKeyService

    async def rows(session: Any, tenant_id: str) -> list[Any]:
        return list(await ApiKeyService(session).list_for(tenant_id))

    table = Table(
        _id_column(),
        Column("prefix", no_wrap=True, min_width=14),
        "name",
        "scopes",
        "roles",
        "expires",
        "revoked",
    )
    for row in _guard(lambda: _run(lambda s: _with_tenant_session(s, tenant, rows))):
        table.add_row(
            row.id,
            row.prefix,
            row.name,
            " ".join(row.scopes),
            ", ".join(row.roles) or "-",
            str(row.expires_at or "-"),
            str(row.revoked_at or "-"),
        )
    console.print(table)


@key_app.command("revoke")
def key_revoke(key_id: str, tenant: Annotated[str, typer.Option(help="Tenant slug.")]) -> None:
    """Revoke an API key."""
    from assetd.auth.service import ApiKeyService

    async def revoke(session: Any, tenant_id: str) -> None:
        await ApiKeyService(session).revoke(tenant_id, key_id)

    _guard(lambda: _run(lambda s: _with_tenant_session(s, tenant, revoke)))
    console.print(f"revoked {key_id}")


def _id_column() -> Column:
    # Ids are what people copy into the next command: never cut or wrap them.
    return Column("id", no_wrap=True, min_width=24)


def _guard(action: Callable[[], T]) -> T:
    """Domain errors become a one-line message and exit code 1, not a traceback."""
    from assetd.errors import AssetdError

    try:
        return action()
    except AssetdError as exc:
        err.print(f"error: {exc.detail}", markup=False)
        raise typer.Exit(1) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        err.print(f"error: {problems}", markup=False)
        raise typer.Exit(1) from None


async def _maintenance(settings: Settings, job: Callable[[Any, Any], Awaitable[T]]) -> T:
    from assetd.db.session import Database
    from assetd.storage.factory import storage_from_settings

    # Logs go to stderr so that stdout stays the JSON report.
    configure_logging(settings.log_level, json=settings.log_json)
    db = Database(settings.resolved_database_url())
    storage = storage_from_settings(settings)
    try:
        return await job(db, storage)
    finally:
        await db.dispose()
        storage.close()


@app.command()
def gc(
    grace_seconds: Annotated[
        int | None, typer.Option(help="Default ASSETD_BLOB_GRACE_SECONDS.")
    ] = None,
    dry_run: bool = False,
) -> None:
    """Delete blobs nothing references, leftovers of crashed uploads, expired sessions and
    finished jobs past ASSETD_JOBS_RETENTION_DAYS."""
    from assetd.maintenance import collect_garbage, prune_jobs

    settings = Settings()
    grace = settings.blob_grace_seconds if grace_seconds is None else grace_seconds
    report = anyio.run(
        lambda: _maintenance(
            settings, lambda db, st: collect_garbage(db, st, grace, dry_run=dry_run)
        )
    )
    retention = settings.jobs_retention_days * 86400
    report.jobs_pruned = anyio.run(
        lambda: _maintenance(settings, lambda db, _: prune_jobs(db, retention, dry_run=dry_run))
    )
    if not dry_run:
        from assetd.uploads.service import expire_sessions

        report.upload_sessions_ended = anyio.run(
            lambda: _maintenance(
                settings, lambda db, st: expire_sessions(db, st, orphan_grace_seconds=grace)
            )
        )
    console.print_json(json.dumps(vars(report)))


@app.command()
def check(verify_hashes: bool = False) -> None:
    """Verify that every referenced blob exists with its size (and hash); exit 1 if not."""
    from assetd.maintenance import check_consistency

    settings = Settings()
    report = anyio.run(
        lambda: _maintenance(
            settings, lambda db, st: check_consistency(db, st, verify_hashes=verify_hashes)
        )
    )
    console.print_json(json.dumps({**vars(report), "ok": report.ok}))
    if not report.ok:
        raise typer.Exit(1)


# -- API commands (use ASSETD_URL and ASSETD_API_KEY) ---------------------------------------


def _client() -> Any:
    from assetd.client import AssetdClient

    return AssetdClient()


def _api(action: Callable[[], T]) -> T:
    from assetd.client import AssetdError

    try:
        return action()
    except AssetdError as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(1) from None


@app.command()
def upload(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    access: Annotated[str | None, typer.Option(help="PUBLIC or PRIVATE.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Repeatable.")] = None,
    asset: Annotated[str | None, typer.Option(help="Add as a new version of this asset.")] = None,
    parts: Annotated[
        bool | None,
        typer.Option(
            "--parts/--no-parts",
            help="Parallel, resumable parts; the default for files of 64 MiB and more.",
        ),
    ] = None,
    part_size: Annotated[
        int | None, typer.Option(help="Bytes per part (5 MiB..5 GiB); the server's default.")
    ] = None,
    parallel: Annotated[int, typer.Option(min=1, max=32, help="Parts sent at once.")] = 4,
) -> None:
    """Upload files, with a progress bar; prints each new asset id.

    Big files go up in parallel parts; run the same command again after an interruption and
    it sends only the parts still missing.
    """
    with (
        _client() as client,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err,
            transient=not sys.stderr.isatty(),
        ) as progress,
    ):
        for path in files:
            task = progress.add_task(path.name, total=path.stat().st_size)

            def send(path: Path = path, task: TaskID = task) -> dict[str, Any]:
                from assetd.client import PARTS_THRESHOLD_BYTES

                use_parts = parts
                if use_parts is None:
                    use_parts = path.stat().st_size >= PARTS_THRESHOLD_BYTES
                if use_parts:
                    fields: dict[str, Any] = {}
                    if access:
                        fields["access"] = access
                    if tag:
                        fields["tags"] = tag
                    done: dict[str, Any] = client.upload_in_parts(
                        path,
                        asset_id=asset,
                        fields=fields,
                        part_size=part_size,
                        parallel=parallel,
                        progress=lambda n: progress.advance(task, n),
                    )
                    return dict(done["asset"])
                result: dict[str, Any] = client.upload(
                    path,
                    access=access,
                    tags=tag,
                    asset_id=asset,
                    progress=lambda n: progress.advance(task, n),
                )
                return result

            result = _api(send)
            # Plain output for scripts: one "ID<TAB>PATH" line per file, never wrapped.
            typer.echo(f"{result.get('id', asset)}\t{path}")


@app.command("ls")
def list_assets(
    q: Annotated[
        str | None, typer.Option("--q", help="Query, e.g. 'type:image size:>1000'.")
    ] = None,
    sort: Annotated[str | None, typer.Option(help="e.g. name,createdAt:desc")] = None,
    limit: int = 60,
    trashed: Annotated[str, typer.Option(help="exclude, include or only")] = "exclude",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List assets matching a query."""
    with _client() as client:
        page = _api(lambda: client.list_assets(q, sort=sort, page_size=limit, trashed=trashed))
    if as_json:
        console.print_json(json.dumps(page))
        return
    table = Table(_id_column(), "name", "type", "access", "size", "modified")
    for item in page["items"]:
        table.add_row(
            item["id"],
            item["name"],
            item["type"],
            item["access"],
            str(item.get("sizeBytes") or "-"),
            item["modifiedAt"],
        )
    console.print(table)


@app.command("get")
def get_asset(
    asset_id: str,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write content here.")
    ] = None,
    version: Annotated[int | None, typer.Option()] = None,
    byte_range: Annotated[str | None, typer.Option("--range", help="START-END, inclusive.")] = None,
) -> None:
    """Show an asset, or with -o download its content (or a byte range of it)."""
    with _client() as client:
        if output is None:
            console.print_json(json.dumps(_api(lambda: client.get(asset_id))))
            return
        span = None
        if byte_range:
            start, _, end = byte_range.partition("-")
            span = (int(start), int(end))
        written = _api(lambda: client.download(asset_id, output, version=version, byte_range=span))
        console.print(f"wrote {written} bytes to {output}")


@app.command()
def trash(asset_id: str) -> None:
    """Move an asset to the trash."""
    with _client() as client:
        _api(lambda: client.trash(asset_id))
    console.print(f"trashed {asset_id}")


@app.command()
def restore(asset_id: str) -> None:
    """Restore an asset from the trash."""
    with _client() as client:
        _api(lambda: client.restore(asset_id))
    console.print(f"restored {asset_id}")


def _print_report(package: dict[str, Any]) -> None:
    report = package["report"]
    summary = ", ".join(f"{count} {code}" for code, count in report["summary"].items() if count)
    console.print(f"package {package['id']}: {report['status']} ({summary or 'empty'})")
    for record in report["records"]:
        if record["resultCode"] in ("CONFLICT", "ERROR"):
            messages = "; ".join(record["messages"])
            console.print(f"  {record['resultCode']} {record['assetId']}: {messages}")
    for blocker in report["blockers"]:
        console.print(f"  blocked: {blocker}")


@package_app.command("upload")
def package_upload(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    install: Annotated[bool, typer.Option(help="Install at once when the report allows.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Upload a package and show its import report (nothing changes without --install)."""
    with _client() as client:
        package = _api(lambda: client.upload_package(path))
        if install and package["report"]["status"] == "READY":
            package = _api(lambda: client.install_package(package["id"]))
    if as_json:
        console.print_json(json.dumps(package))
    else:
        _print_report(package)


@package_app.command("install")
def package_install(
    package_id: str,
    on_conflict: Annotated[str, typer.Option(help="fail, skip or overwrite")] = "fail",
    ignore_unresolved: bool = False,
) -> None:
    """Install an uploaded package: every entry or none."""
    with _client() as client:
        package = _api(
            lambda: client.install_package(
                package_id, on_conflict=on_conflict, ignore_unresolved=ignore_unresolved
            )
        )
    _print_report(package)


@package_app.command("export")
def package_export(
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the zip.")],
    ids: Annotated[list[str] | None, typer.Option("--id", help="An asset id (repeat).")] = None,
    collection: Annotated[str | None, typer.Option(help="A collection id.")] = None,
    q: Annotated[str | None, typer.Option("--q", help="A query, e.g. 'type:image'.")] = None,
    name: str = "export",
    version: str = "1.0",
) -> None:
    """Export assets (ids, a collection or a query) and what they depend on as a package."""
    selection: dict[str, Any] = {"name": name, "version": version}
    if ids:
        selection["assetIds"] = ids
    if collection:
        selection["collectionId"] = collection
    if q:
        selection["q"] = q
    with _client() as client:
        written = _api(lambda: client.export_package(output, **selection))
    console.print(f"wrote {written} bytes to {output}")
