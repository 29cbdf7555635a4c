"""create_app(settings): the only place where engines, stores and clients are built."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from assetd import __version__
from assetd.api import compat_routers, native_routers
from assetd.assets.schemas import AssetCreate, AssetFields
from assetd.config import Settings
from assetd.context import AppContext, build_context
from assetd.db.session import Database
from assetd.jobs.backends import HueyJobQueue, build_huey
from assetd.jobs.worker import JobRegistry, ThreadedExecutor, build_registry, sweep_forever
from assetd.logging import configure_logging
from assetd.middleware import Metrics, RequestContextMiddleware
from assetd.problems import install_problem_handlers, problem
from assetd.storage.base import BlobStorage
from assetd.storage.factory import storage_from_settings
from assetd.uploads.service import expire_sessions

log = structlog.get_logger()


def signing_secret(settings: Settings) -> bytes:
    """The configured secret, or one generated once and kept beside the data (embedded shape)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = Path(settings.data_dir) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Several workers may start at once: write a private temp file, then link it into
        # place; link() fails if another process won, and then its secret is the one.
        temp = path.with_name(f".secret.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    return path.read_text().strip().encode()


def create_app(
    settings: Settings,
    *,
    storage: BlobStorage | None = None,
    job_registry: JobRegistry | None = None,
) -> FastAPI:
    """The app; job_registry defaults to build_registry(settings) (what `worker` runs too)."""
    configure_logging(settings.log_level, json=settings.log_json)
    metrics = Metrics()
    registry = job_registry if job_registry is not None else build_registry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url())
        if storage is not None:
            store = storage
        else:
            store = await anyio.to_thread.run_sync(storage_from_settings, settings)
        queue = await anyio.to_thread.run_sync(
            lambda: HueyJobQueue(build_huey(settings.resolved_jobs_url()))
        )
        context = app.state.context = build_context(settings, db, store, queue)
        tasks: list[asyncio.Task[None]] = []
        if settings.upload_cleanup_interval_seconds > 0:
            tasks.append(asyncio.create_task(_expire_uploads(context)))
        consumer = None
        if settings.jobs_in_process:
            # Embedded shape: huey thread workers in this process, no extra service.
            queue.set_executor(ThreadedExecutor(context, registry, queue))
            consumer = queue.consumer(
                settings.jobs_threads,
                embedded=True,
                shutdown_timeout=settings.jobs_shutdown_timeout_seconds,
            )
            consumer.start()
            if settings.jobs_sweep_interval_seconds > 0:
                tasks.append(asyncio.create_task(sweep_forever(db, queue, settings)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if consumer is not None:
                await anyio.to_thread.run_sync(lambda: consumer.stop(graceful=True))
            await anyio.to_thread.run_sync(queue.close)
            await db.dispose()
            if storage is None:
                store.close()

    app = FastAPI(
        title="assetd",
        version=__version__,
        summary="Multi-tenant digital asset service",
        lifespan=lifespan,
    )
    install_problem_handlers(app)
    for router in native_routers:
        app.include_router(router, prefix="/v1")
    for router in compat_routers:
        app.include_router(router)

    @app.get("/healthz", tags=["operations"], summary="200 once the server is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="200 when the database and store answer")
    async def readyz(request: Request) -> Response:
        context: AppContext = request.app.state.context
        try:
            async with context.db.session(write=False) as session:
                await session.execute(sa.text("SELECT 1"))
            await anyio.to_thread.run_sync(
                lambda: next(iter(context.storage.list("_ready/")), None)
            )
        except Exception as exc:  # readiness reports any failure instead of raising it
            return problem(503, "Not ready", f"{type(exc).__name__}: {exc}")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _expire_uploads(context: AppContext) -> None:
    """The periodic job that ends abandoned upload sessions and frees their staged parts."""
    settings = context.settings
    while True:
        await asyncio.sleep(settings.upload_cleanup_interval_seconds)
        try:
            await expire_sessions(
                context.db, context.storage, orphan_grace_seconds=settings.blob_grace_seconds
            )
        except Exception:  # the next pass retries; a failed pass must not stop the server
            log.exception("upload.expiry_failed")


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the bodies of routes that parse their own (streaming) requests."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (AssetCreate, AssetFields):
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, nested in definition.pop("$defs", {}).items():
                components.setdefault(name, nested)
            components.setdefault(model.__name__, definition)
        app.openapi_schema = schema
    return app.openapi_schema
