"""List-query latency at 5k, 100k and 1M assets, on SQLite and PostgreSQL, through HTTP.

    .venv/bin/python -m bench.list_latency                          # all sizes, both DBs
    .venv/bin/python -m bench.list_latency --sizes 5000 --dbs sqlite

For each database a fresh `assetd serve --workers 1` migrates and bootstraps the `bench`
tenant; rows are then bulk-inserted straight into `assets` (SQLAlchemy Core executemany in
batches; the table, its indexes and its types are assetd's own) and topped up from one size
to the next. The bench tenant holds N assets (95% active, 4% trashed, 1% pending); a second
tenant holds N/4 more, so the tenant filter matters. Values are varied and skewed: type
(40% image ... 1% certificate), access (30% PUBLIC), names from a word list, created_at over
two years, lognormal sizes, MIME types and extensions per type, tags, and a metadata object
(campaign, project, rating, approved; 10% of assets have none).

PostgreSQL gets `VACUUM ANALYZE assets` after each load (what autovacuum would do soon after);
SQLite is left as assetd leaves it (assetd never runs ANALYZE), and is measured a second
time after `ANALYZE` to show whether statistics change the plan.

Per query: 30 warm-up requests, then `requests` sequential ones on one keep-alive connection
(http.client); p50/p95 ms. Beside it, the same SELECT that assetd builds (its own query
compiler and ORDER BY, LIMIT 61) timed on a raw driver connection, and EXPLAIN (ANALYZE,
BUFFERS) on PostgreSQL / EXPLAIN QUERY PLAN on SQLite, to tell query time from HTTP + ORM +
JSON time and to check which index is used.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import sqlite3
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa

from bench.common import (
    API_KEY,
    HOST,
    RESULTS_DIR,
    TENANT,
    AssetdServer,
    Interference,
    PySpy,
    latency_summary,
    log,
    machine_info,
    start_log,
    wait_quiet,
    write_results,
)

PG_ADMIN_URL = f"postgresql://postgres@{HOST}:5432/postgres"
PG_DB = "assetd_bench"
PG_URL = f"postgresql://postgres@{HOST}:5432/{PG_DB}"
PAGE_SIZE = 60
WARMUP = 30

QUERIES: dict[str, dict[str, str | None]] = {
    # The query: an enum filter pair and the default sort, spelled out.
    "type+access, createdAt desc": {"q": "type:image access:PUBLIC", "sort": "createdAt:desc"},
    # A custom-metadata (JSON) filter and a sort by name.
    "metadata+access, name": {"q": "metadata.campaign:spring access:PRIVATE", "sort": "name"},
    # No filter, default sort: the plain "newest first" page.
    "no filter, default sort": {"q": None, "sort": None},
}

TYPES = [
    ("image", 40),
    ("document", 20),
    ("video", 10),
    ("audio", 8),
    ("script", 5),
    ("other", 5),
    ("app", 4),
    ("package", 4),
    ("book", 3),
    ("certificate", 1),
]
MIME = {
    "image": [("image/jpeg", "jpg"), ("image/png", "png"), ("image/webp", "webp")],
    "document": [
        ("application/pdf", "pdf"),
        ("text/plain", "txt"),
        ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
    ],
    "video": [("video/mp4", "mp4"), ("video/webm", "webm")],
    "audio": [("audio/mpeg", "mp3"), ("audio/ogg", "ogg")],
    "script": [("text/javascript", "js"), ("text/x-python", "py")],
    "other": [("application/octet-stream", "bin")],
    "app": [("application/vnd.android.package-archive", "apk")],
    "package": [("application/zip", "zip"), ("application/gzip", "gz")],
    "book": [("application/epub+zip", "epub")],
    "certificate": [("application/x-x509-ca-cert", "crt")],
}
WORDS = (
    "alpha banner brochure campaign catalog chart cover draft event final flyer header hero "
    "icon invoice logo manual mockup newsletter offer photo plan poster press product promo "
    "report review sample season slide sketch social spec splash store summary teaser "
    "template thumbnail title trailer tutorial update video web welcome winter"
).split()
TAGS = "approved draft hero print social web internal legal brand archive q1 q2 q3 q4".split()
CAMPAIGNS = ["spring", "summer", "fall", "winter", "holiday"]


# -- seeding --------------------------------------------------------------------------------


def _rows(tenant_id: str, count: int, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    types = [t for t, _ in TYPES]
    weights = [w for _, w in TYPES]
    rows = []
    for _ in range(count):
        created = now - timedelta(seconds=rng.random() * 730 * 86400)
        millis = int(created.timestamp() * 1000)
        kind_type = rng.choices(types, weights)[0]
        mime, ext = rng.choice(MIME[kind_type])
        name = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}-{rng.randrange(100000)}.{ext}"
        state_roll = rng.random()
        state = "active" if state_roll < 0.95 else "trashed" if state_roll < 0.99 else "pending"
        meta: dict[str, Any] = {}
        if rng.random() < 0.9:
            meta = {
                "campaign": rng.choice(CAMPAIGNS),
                "project": f"p{rng.randrange(200):03d}",
                "rating": rng.randint(1, 5),
                "approved": rng.random() < 0.5,
            }
        modified = created + timedelta(seconds=rng.random() * 86400 * 30)
        rows.append(
            {
                "id": f"{millis:012x}{rng.getrandbits(48):012x}",
                "tenant_id": tenant_id,
                "kind": "BLOB",
                "type": kind_type,
                "access": "PUBLIC" if rng.random() < 0.3 else "PRIVATE",
                "state": state,
                "name": name,
                "description": "",
                "tags": rng.sample(TAGS, rng.randrange(4)),
                "ref_ids": [],
                "metadata": meta,
                "segment_id": None,
                "url": None,
                "revision": 1,
                "current_version_id": None,
                "version_number": 1,
                "size_bytes": int(rng.lognormvariate(12, 2)) + 1,
                "mime_type": mime,
                "filename": name,
                "extension": ext,
                "sha256": f"{rng.getrandbits(256):064x}",
                "created_at": created,
                "created_by": "key:seed",
                "modified_at": modified,
                "modified_by": "key:seed",
                "trashed_at": modified if state == "trashed" else None,
            }
        )
    return rows


def sync_url(db: str, data_dir: Path) -> str:
    if db == "sqlite":
        return f"sqlite:///{data_dir / 'assetd.db'}"
    return PG_URL.replace("postgresql://", "postgresql+psycopg://")


def ensure_other_tenant(engine: sa.Engine) -> str:
    from assetd.tenants.models import Tenant

    table = Tenant.__table__
    with engine.begin() as conn:
        found = conn.execute(sa.select(table.c.id).where(table.c.slug == "other")).scalar()
        if found:
            return str(found)
        tenant_id = f"{int(time.time() * 1000):012x}{random.getrandbits(48):012x}"
        conn.execute(
            table.insert(),
            {
                "id": tenant_id,
                "slug": "other",
                "name": "other",
                "used_bytes": 0,
                "created_at": datetime.now(UTC),
            },
        )
        return tenant_id


def count_rows(engine: sa.Engine, tenant_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM assets WHERE tenant_id = :t"), {"t": tenant_id}
            ).scalar_one()
        )


def seed(engine: sa.Engine, db: str, tenant_id: str, target: int, batch: int = 5000) -> float:
    """Insert rows until the tenant has `target` assets; seconds taken."""
    from assetd.assets.models import Asset

    table = Asset.__table__
    have = count_rows(engine, tenant_id)
    need = max(0, target - have)
    rng = random.Random(f"{tenant_id}-{have}")
    now = datetime.now(UTC)
    started = time.perf_counter()
    with engine.connect() as conn:
        if db == "sqlite":
            conn.exec_driver_sql("PRAGMA synchronous=OFF")  # this loading connection only
            conn.exec_driver_sql("PRAGMA cache_size=-524288")
            conn.commit()
        while need > 0:
            rows = _rows(tenant_id, min(batch, need), rng, now)
            with conn.begin():
                conn.execute(table.insert(), rows)
            need -= len(rows)
    return time.perf_counter() - started


def after_load(engine: sa.Engine, db: str) -> None:
    if db == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE assets")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def recreate_pg_database() -> None:
    for sql in (f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)", f"CREATE DATABASE {PG_DB}"):
        subprocess.run(
            [
                "psql",
                "-h",
                HOST,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-qc",
                sql,
            ],
            check=True,
        )


# -- the SQL assetd runs -------------------------------------------------------------------


def assetd_select(
    db: str, tenant_id: str, q: str | None, sort: str | None
) -> tuple[str, dict[str, Any] | None]:
    """The statement AssetService.search + AssetRepository.find build, as (sql, params).

    SQLite: values inlined. PostgreSQL: bound parameters with psycopg's casts, as assetd
    sends them (psycopg prepares a statement after 5 runs, for us and for assetd alike).
    """
    import enum

    from sqlalchemy.dialects import postgresql, sqlite

    from assetd.assets import query
    from assetd.assets.models import Asset, AssetState

    where: list[Any] = [Asset.state == AssetState.active]
    condition = query.compile_query(q, dialect=db)
    if condition is not None:
        where.append(condition)
    keys = query.compile_sort(sort, dialect=db)
    stmt = (
        sa.select(Asset)
        .where(Asset.tenant_id == tenant_id)
        .where(*where)
        .order_by(*query.order_by(keys))
        .limit(PAGE_SIZE + 1)
        .offset(0)
    )
    if db == "sqlite":
        compiled = stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})
        return str(compiled), None
    compiled = stmt.compile(dialect=postgresql.psycopg.dialect())
    params = {k: v.value if isinstance(v, enum.Enum) else v for k, v in compiled.params.items()}
    return str(compiled), params


def time_sql(
    db: str, data_dir: Path, sql: str, params: dict[str, Any] | None, requests: int
) -> dict[str, Any]:
    """The SELECT on a raw driver connection: execute + fetchall, sequentially."""
    if db == "sqlite":
        conn: Any = sqlite3.connect(data_dir / "assetd.db")
        from assetd.assets.query import register_sqlite_functions

        register_sqlite_functions(conn)
    else:
        import psycopg

        conn = psycopg.connect(PG_URL, autocommit=True)
    try:
        cur = conn.cursor()
        times = []
        rows = 0
        for n in range(WARMUP + requests):
            started = time.perf_counter()
            cur.execute(sql, params or ())
            rows = len(cur.fetchall())
            if n >= WARMUP:
                times.append(time.perf_counter() - started)
        result: dict[str, Any] = {"rows": rows, **latency_summary(times)}
        if db == "sqlite":
            cur.execute("EXPLAIN QUERY PLAN " + sql, params or ())
            result["plan"] = "\n".join(str(r[-1]) for r in cur.fetchall())
        else:
            executions = []
            for _ in range(20):
                cur.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
                top = cur.fetchone()[0][0]
                executions.append((top["Planning Time"] + top["Execution Time"]) / 1000)
            result["explain_analyze"] = {
                "planning_plus_execution": latency_summary(executions),
                "execution_ms_last": top["Execution Time"],
                "planning_ms_last": top["Planning Time"],
            }
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            result["plan"] = "\n".join(r[0] for r in cur.fetchall())
        result["indexes"] = sorted(
            set(re.findall(r"\b(ix_assets_\w+|pk_assets)\b", result["plan"]))
        )
        result["sort_in_memory"] = bool(
            re.search(
                r"TEMP B-TREE FOR ORDER BY|^\s*(->\s*)?(Incremental )?Sort\b",
                result["plan"],
                re.MULTILINE,
            )
        )
        return result
    finally:
        conn.close()


# -- HTTP -----------------------------------------------------------------------------------


def time_http(port: int, q: str | None, sort: str | None, requests: int) -> dict[str, Any]:
    params = {"pageSize": PAGE_SIZE}
    if q:
        params["q"] = q
    if sort:
        params["sort"] = sort
    target = "/v1/assets?" + urlencode(params)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    times = []
    items = 0
    try:
        for n in range(WARMUP + requests):
            started = time.perf_counter()
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                raise RuntimeError(f"GET {target} -> {response.status}: {body[:300]!r}")
            if n >= WARMUP:
                times.append(elapsed)
        items = len(json.loads(body)["items"])
    finally:
        conn.close()
    return {"path": target, "items": items, "bytes": len(body), **latency_summary(times)}


# -- orchestration --------------------------------------------------------------------------


def measure(
    db: str, server: AssetdServer, tenant_id: str, size: int, requests: int, label: str = ""
) -> list[dict[str, Any]]:
    out = []
    for name, spec in QUERIES.items():
        wait_quiet(server.pids)
        with Interference(server.pids) as noise:
            http_result = time_http(server.port, spec["q"], spec["sort"], requests)
        http_result["foreign_cpu_cores"] = noise.foreign_cores
        sql, params = assetd_select(db, tenant_id, spec["q"], spec["sort"])
        sql_result = time_sql(db, server.data_dir, sql, params, requests)
        entry = {
            "db": db + label,
            "assets": size,
            "query": name,
            "q": spec["q"],
            "sort": spec["sort"],
            "http": http_result,
            "sql": sql_result,
            "sql_text": sql,
            "sql_params": params,
        }
        log(
            f"{db}{label} n={size} {name!r}: HTTP p50 {http_result['p50_ms']} p95 "
            f"{http_result['p95_ms']} ms | SQL p50 {sql_result['p50_ms']} p95 "
            f"{sql_result['p95_ms']} ms | {', '.join(sql_result['indexes']) or 'no index'}"
            f"{' + sort' if sql_result['sort_in_memory'] else ''}"
        )
        out.append(entry)
    return out


def profile_list(db: str, server: AssetdServer, size: int) -> dict[str, Any]:
    """py-spy --gil on the server during 1,000 extra requests of the first query (untimed)."""
    from bench import profile

    if PySpy.binary() is None:
        log("py-spy not found (uv pip install py-spy): skipping the list profile")
        return {}
    name, spec = next(iter(QUERIES.items()))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"pyspy-list-{db}-{size}.txt"
    with PySpy(server.worker_pids()[0], out):
        timed = time_http(server.port, spec["q"], spec["sort"], 1000)
    log(f"profile list {db} {size}: {out}")
    return {
        "query": name,
        "assets": size,
        "under_profiler": timed,
        "file": str(out),
        **profile.summarize(out),
    }


def _restart(server: AssetdServer) -> AssetdServer:
    server.stop()
    fresh = AssetdServer(
        server.data_dir, workers=server.workers, database_url=server.database_url, port=server.port
    )
    return fresh.start()


def run_db(
    db: str, sizes: list[int], requests: int, root: Path, profile: bool = False
) -> dict[str, Any]:
    data_dir = root / f"list-{db}"
    if db == "postgresql":
        recreate_pg_database()
    server = AssetdServer(data_dir, workers=1, database_url=PG_URL if db == "postgresql" else None)
    server.start()
    results: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    try:
        engine = sa.create_engine(sync_url(db, data_dir))
        with engine.connect() as conn:
            tenant_id = conn.execute(
                sa.text("SELECT id FROM tenants WHERE slug = :s"), {"s": TENANT}
            ).scalar_one()
        other_id = ensure_other_tenant(engine)
        for size in sorted(sizes):
            started = time.perf_counter()
            seconds = seed(engine, db, tenant_id, size)
            seconds += seed(engine, db, other_id, size // 4)
            after_load(engine, db)
            load = {
                "assets": size,
                "other_tenant": size // 4,
                "seed_s": round(seconds, 1),
                "total_s": round(time.perf_counter() - started, 1),
            }
            loads.append(load)
            log(f"{db}: loaded to {size} (+{size // 4} other) in {load['total_s']} s")
            results.extend(measure(db, server, tenant_id, size, requests))
            if profile and size == min(sizes):
                profiles.append(profile_list(db, server, size))
            if db == "sqlite":
                # SQLite connections read the statistics with the schema: restart around it.
                server = _restart(server)
                with engine.connect() as conn:
                    conn.exec_driver_sql("ANALYZE")
                    conn.commit()
                server = _restart(server)
                results.extend(measure(db, server, tenant_id, size, requests, " +ANALYZE"))
                with engine.connect() as conn:  # back to what assetd ships: no statistics
                    conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat1")
                    conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat4")
                    conn.commit()
                server = _restart(server)
        engine.dispose()
    finally:
        server.stop()
    size_bytes = None
    if db == "sqlite":
        size_bytes = (data_dir / "assetd.db").stat().st_size
    return {"loads": loads, "results": results, "db_file_bytes": size_bytes, "profiles": profiles}


def run_all(
    sizes: list[int], dbs: list[str], requests: int, root: Path, profile: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "queries": QUERIES,
        "page_size": PAGE_SIZE,
        "requests": requests,
        "warmup": WARMUP,
    }
    for db in dbs:
        out[db] = run_db(db, sizes, requests, root, profile)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="5000,100000,1000000", type=lambda s: [int(p) for p in s.split(",")]
    )
    parser.add_argument(
        "--dbs", default="sqlite,postgresql", type=lambda s: [p.strip() for p in s.split(",")]
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--tmp-dir", default=None)
    parser.add_argument("--profile", action="store_true", help="py-spy the list requests")
    args = parser.parse_args()
    from bench import report

    start_log("list")
    with tempfile.TemporaryDirectory(prefix="assetd-list-", dir=args.tmp_dir) as tmp:
        results = {
            "machine": machine_info(),
            "command": "python -m bench.list_latency",
            "list": run_all(args.sizes, args.dbs, args.requests, Path(tmp), args.profile),
        }
    markdown = report.markdown(results)
    json_path, md_path = write_results("list", results, markdown)
    print(markdown)
    log(f"results: {json_path} and {md_path}")


if __name__ == "__main__":
    main()
