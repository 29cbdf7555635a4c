"""Count what one request costs inside assetd: SQL statements, thread hand-offs, new DB
connections, threads started, and how long SQLite's write lock is held.

    .venv/bin/python -m bench.hops [--requests 100] [--concurrency 1]
    .venv/bin/python -m bench.hops --cprofile upload   # + server-thread CPU by package
    .venv/bin/python -m bench.hops --handoff           # cost of one thread hand-off

Runs assetd's own app (create_app) under uvicorn in this process, on a fresh SQLite data dir,
with counters wrapped around aiosqlite (since 6c5c13f assetd's SQLite calls no longer hand
off to a thread, and that counter stays at 0), anyio.to_thread.run_sync (storage, hashing,
file reads), SQLAlchemy's cursor/connect/begin/commit events and threading.Thread.start.
Nothing under src/ changes. Sequential requests by default (concurrency 1), so the counts
are per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiosqlite.core
import anyio.to_thread
import httpx
import sqlalchemy as sa
import uvicorn

from bench.common import API_KEY, HOST, TENANT, free_port, log

COUNTS: Counter[str] = Counter()
TIMES: Counter[str] = Counter()  # seconds, summed over the requests
LOCK_HELD: list[float] = []
_write_began: dict[int, float] = {}
_statement_began: dict[int, float] = {}


def install_counters() -> None:
    original_execute = aiosqlite.core.Connection._execute

    async def _execute(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["aiosqlite hand-offs"] += 1
        return await original_execute(self, fn, *args, **kwargs)

    aiosqlite.core.Connection._execute = _execute  # type: ignore[method-assign]

    original_run_sync = anyio.to_thread.run_sync

    async def run_sync(*args: Any, **kwargs: Any) -> Any:
        COUNTS["anyio to_thread hand-offs"] += 1
        return await original_run_sync(*args, **kwargs)

    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]

    original_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        COUNTS["threads started"] += 1
        original_start(self)

    threading.Thread.start = start  # type: ignore[method-assign]

    @sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
    def _statement(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        COUNTS["SQL statements"] += 1
        _statement_began[id(conn)] = time.perf_counter()

    @sa.event.listens_for(sa.engine.Engine, "after_cursor_execute")
    def _statement_done(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        began = _statement_began.pop(id(conn), None)
        if began is not None:
            # a whole aiosqlite round trip: hand-off, SQLite, hand-back
            TIMES["SQL execute round trips ms"] += time.perf_counter() - began

    @sa.event.listens_for(sa.engine.Engine, "begin")
    def _begin(conn: Any) -> None:
        # On SQLite's writer engine (a pool of one) a transaction holds the write lock from
        # its BEGIN IMMEDIATE to its commit.
        if getattr(conn.engine.pool, "size", lambda: 0)() == 1:
            _write_began[id(conn)] = time.perf_counter()

    @sa.event.listens_for(sa.engine.Engine, "commit")
    def _commit(conn: Any) -> None:
        COUNTS["commits"] += 1
        began = _write_began.pop(id(conn), None)
        if began is not None:
            held = time.perf_counter() - began
            LOCK_HELD.append(held)
            # The server's thread, or a job runner's ("Worker-N"): both write.
            TIMES[f"write lock held by {threading.current_thread().name.split('-')[0]} ms"] += held

    from assetd.assets.ingest import StagedUpload

    original_publish = StagedUpload.publish

    async def publish(self: Any, key: str, *args: Any) -> None:
        began = time.perf_counter()
        await original_publish(self, key, *args)
        TIMES["publish (rename; without a session also fsync dir) ms"] += (
            time.perf_counter() - began
        )

    StagedUpload.publish = publish  # type: ignore[method-assign]

    import functools
    import inspect

    from sqlalchemy.ext.asyncio import AsyncSession

    from assetd.assets import routes, uploads
    from assetd.assets.repository import AssetRepository, BlobRepository, VersionRepository
    from assetd.assets.service import AssetService
    from assetd.assets.sniff import Sniffer
    from assetd.db.repository import RepositoryBase
    from assetd.tenants.repository import TenantRepository

    def timed(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        if inspect.iscoroutinefunction(original):

            @functools.wraps(original)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    TIMES[f"{label} ms"] += time.perf_counter() - began

            setattr(owner, name, async_wrapper)
        else:

            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    TIMES[f"{label} ms"] += time.perf_counter() - began

            setattr(owner, name, wrapper)

    for owner, name, label in (
        (uploads, "receive_upload", "step: receive_upload (body into staging)"),
        (routes, "receive_upload", "step: receive_upload (body into staging)"),
        (AssetService, "create_from_upload", "step: create_from_upload (write txn body)"),
        (RepositoryBase, "add", "  repo.add + flush"),
        (BlobRepository, "reference", "  blobs.reference"),
        (TenantRepository, "charge", "  tenants.charge"),
        (VersionRepository, "next_number", "  versions.next_number"),
        (Sniffer, "classify", "  sniffer.classify"),
        (AsyncSession, "commit", "step: session.commit"),
        (AsyncSession, "flush", "  session.flush (all)"),
        (routes, "to_read", "step: to_read"),
        (AssetRepository, "get_visible", "  assets.get_visible"),
        (VersionRepository, "get_number", "  versions.get_number"),
    ):
        timed(owner, name, label)

    @sa.event.listens_for(sa.pool.Pool, "connect")
    def _connect(*_: Any) -> None:
        COUNTS["new DB connections"] += 1


def start_server(data_dir: Path, port: int, profiler: Any = None) -> uvicorn.Server:
    os.environ.update(
        ASSETD_DATA_DIR=str(data_dir),
        ASSETD_BOOTSTRAP_TENANT=TENANT,
        ASSETD_BOOTSTRAP_API_KEY=API_KEY,
        ASSETD_PORT=str(port),
        ASSETD_LOG_LEVEL="WARNING",
    )
    from assetd.app import create_app
    from assetd.cli import _migrate
    from assetd.config import Settings
    from assetd.db.session import Database
    from assetd.tenants.bootstrap import bootstrap

    settings = Settings()
    _migrate(settings)

    async def first_start() -> None:
        db = Database(settings.resolved_database_url())
        try:
            await bootstrap(db, settings)
        finally:
            await db.dispose()

    asyncio.run(first_start())
    config = uvicorn.Config(
        create_app(settings), host=HOST, port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    target = server.run if profiler is None else (lambda: profiler.runcall(server.run))
    threading.Thread(target=target, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server


async def measure(
    port: int, name: str, requests: int, concurrency: int, make: Any
) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{port}", headers={"Authorization": f"Bearer {API_KEY}"}
    ) as client:
        await make(client, -1)  # warm: imports, caches, the first connection
        COUNTS.clear()
        TIMES.clear()
        LOCK_HELD.clear()
        numbers = iter(range(requests))

        async def worker() -> None:
            for i in numbers:
                began = time.perf_counter()
                await make(client, i)
                TIMES["request wall ms"] += time.perf_counter() - began

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    per: dict[str, float] = {k: round(v / requests, 2) for k, v in sorted(COUNTS.items())}
    per.update({k: round(v / requests * 1000, 3) for k, v in sorted(TIMES.items())})
    if LOCK_HELD:
        held = sorted(LOCK_HELD)
        per["write lock held p50 ms"] = round(held[len(held) // 2] * 1000, 2)
        per["write lock held p95 ms"] = round(held[int(len(held) * 0.95)] * 1000, 2)
    log(f"{name}: {json.dumps(per)}")
    return per


async def workloads(
    port: int, requests: int, concurrency: int, only: str | None = None
) -> dict[str, Any]:
    ids: list[str] = []

    async def upload(client: httpx.AsyncClient, i: int) -> None:
        response = await client.post(
            f"/v1/assets?filename=h{i}.bin",
            content=os.urandom(10 * 1024),
            headers={"Content-Type": "application/octet-stream"},
        )
        response.raise_for_status()
        ids.append(response.json()["id"])

    async def download(client: httpx.AsyncClient, i: int) -> None:
        response = await client.get(f"/v1/assets/{ids[i % len(ids)]}/content")
        response.raise_for_status()

    async def list_page(client: httpx.AsyncClient, i: int) -> None:
        response = await client.get(
            "/v1/assets", params={"q": "type:other", "sort": "createdAt:desc", "pageSize": 60}
        )
        response.raise_for_status()

    out = {}
    if only in (None, "upload", "download", "list"):
        out["10 KiB upload (raw body)"] = await measure(
            port, "upload", requests if only in (None, "upload") else 60, concurrency, upload
        )
    if only in (None, "download"):
        out["10 KiB download"] = await measure(port, "download", requests, concurrency, download)
    if only in (None, "list"):
        out["list, 60 items"] = await measure(port, "list", requests, concurrency, list_page)
    return out


async def handoff_costs(data_dir: Path, rounds: int = 3000) -> dict[str, float]:
    """Wall and CPU microseconds of one aiosqlite call and one anyio thread hop, vs direct."""
    import sqlite3

    path = data_dir / "handoff.db"
    direct = sqlite3.connect(path)
    out: dict[str, float] = {}

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    w0, c0 = clock()
    for _ in range(rounds):
        direct.execute("SELECT 1").fetchall()
    w1, c1 = clock()
    out["sqlite3 direct SELECT 1 + fetchall, us wall"] = round((w1 - w0) / rounds * 1e6, 1)
    out["sqlite3 direct SELECT 1 + fetchall, us CPU"] = round((c1 - c0) / rounds * 1e6, 1)
    direct.close()
    async with aiosqlite.connect(path) as conn:
        w0, c0 = clock()
        for _ in range(rounds):
            cursor = await conn.execute("SELECT 1")  # 1 hand-off
            await cursor.fetchall()  # 1
            await cursor.close()  # 1
        w1, c1 = clock()
    out["aiosqlite SELECT 1 (3 hand-offs), us wall"] = round((w1 - w0) / rounds * 1e6, 1)
    out["aiosqlite SELECT 1 (3 hand-offs), us CPU (both threads)"] = round(
        (c1 - c0) / rounds * 1e6, 1
    )
    w0, c0 = clock()
    for _ in range(rounds):
        await anyio.to_thread.run_sync(int)
    w1, c1 = clock()
    out["anyio.to_thread.run_sync(no-op), us wall"] = round((w1 - w0) / rounds * 1e6, 1)
    out["anyio.to_thread.run_sync(no-op), us CPU (both threads)"] = round(
        (c1 - c0) / rounds * 1e6, 1
    )
    return out


def _builtin_owner(name: str) -> str:
    """C functions: '{method 'put_nowait' of '_queue.SimpleQueue' objects}' -> a label."""
    if " of '" in name:
        return "C: " + name.split(" of '", 1)[1].split("'", 1)[0].split(".", 1)[0]
    return "C: " + name.strip("{}<>").split(" ")[-1].split(".")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument(
        "--cprofile",
        choices=["upload", "download", "list"],
        help="run only this workload (uploads first feed the others) under cProfile, timing "
        "the server thread's CPU (time.thread_time), and print the top functions",
    )
    parser.add_argument(
        "--save-profile", metavar="FILE", help="with --cprofile: also write the pstats file"
    )
    parser.add_argument(
        "--handoff", action="store_true", help="only time one aiosqlite/anyio hand-off"
    )
    args = parser.parse_args()
    if args.handoff:
        with tempfile.TemporaryDirectory(prefix="assetd-hops-") as tmp:
            print(json.dumps(asyncio.run(handoff_costs(Path(tmp))), indent=1))
        return
    install_counters()
    profiler = None
    if args.cprofile:
        import cProfile

        profiler = cProfile.Profile(time.thread_time)
    with tempfile.TemporaryDirectory(prefix="assetd-hops-") as tmp:
        port = free_port()
        server = start_server(Path(tmp) / "data", port, profiler)
        try:
            result = asyncio.run(workloads(port, args.requests, args.concurrency, args.cprofile))
        finally:
            server.should_exit = True
            time.sleep(1.0)
    print(json.dumps({"concurrency": args.concurrency, "per_request": result}, indent=1))
    if profiler is not None:
        import pstats

        from bench.profile import package_of

        stats = pstats.Stats(profiler)
        if args.save_profile:
            stats.dump_stats(args.save_profile)
        by_package: Counter[str] = Counter()
        for (filename, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
            package = package_of(filename) if filename != "~" else _builtin_owner(name)
            by_package[package] += row[2]  # tottime
        total = sum(by_package.values())
        print(f"\nserver-thread CPU under cProfile by package (tottime, {total:.2f} s in all):")
        for package, seconds in by_package.most_common(25):
            print(f"  {100 * seconds / total:5.1f}%  {package}")
        stats.sort_stats("tottime").print_stats(40)


if __name__ == "__main__":
    main()
