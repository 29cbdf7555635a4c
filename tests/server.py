"""A real `assetd serve` process on 127.0.0.1, for tests that need the whole stack."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class RunningServer:
    url: str
    key: str | None
    pid: int
    data_dir: Path
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")


def plain_url(database_url: str) -> str:
    """The URL an operator would write: no async driver in the scheme."""
    return database_url.replace("+aiosqlite", "").replace("+psycopg", "")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def truncate_all(plain_database_url: str) -> None:
    """Empty every assetd table of a database that a server process shares with the tests."""
    from assetd.db.base import Base

    url = plain_database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    try:
        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                for table in tables:
                    conn.exec_driver_sql(f'DELETE FROM "{table}"')
            else:
                conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
    finally:
        engine.dispose()


@contextmanager
def shared_database(database_url: str) -> Iterator[str | None]:
    """The database a server process should use in this test run.

    On PostgreSQL: the session's test database (plain URL), emptied before and after, so the
    server bootstraps as on a fresh install. On SQLite: None, so the server keeps its own file
    in its data dir, exactly as `assetd serve` does out of the box.
    """
    if os.environ.get("ASSETD_TEST_DATABASE", "sqlite") != "postgres":
        yield None
        return
    url = plain_url(database_url)
    truncate_all(url)
    try:
        yield url
    finally:
        truncate_all(url)


def server_env(
    data_dir: Path,
    *,
    database_url: str | None = None,
    api_key: str | None = None,
    tenant: str | None = None,
    port: int | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """A clean environment: no ASSETD_* setting leaks in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSETD_")}
    env["ASSETD_DATA_DIR"] = str(data_dir)
    env["ASSETD_LOG_LEVEL"] = "INFO"  # uvicorn's lifecycle lines prove a clean shutdown
    if port is not None:
        env["ASSETD_PORT"] = str(port)
    if database_url is not None:
        env["ASSETD_DATABASE_URL"] = database_url
    if api_key is not None:
        env["ASSETD_BOOTSTRAP_API_KEY"] = api_key
    if tenant is not None:
        env["ASSETD_BOOTSTRAP_TENANT"] = tenant
    env.update(extra or {})
    return env


@contextmanager
def run_server(
    data_dir: Path,
    *,
    database_url: str | None = None,
    api_key: str | None = None,
    tenant: str | None = None,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[RunningServer]:
    """Start `assetd serve`, wait for /healthz, and stop it (cleanly) when the block ends.

    database_url is a plain URL (sqlite:///… or postgresql://…); None means the SQLite file
    in data_dir, as on a fresh install. When api_key is None the key the server generates on
    first start is read from its output (None when the database already had a tenant).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = server_env(
        data_dir,
        database_url=database_url,
        api_key=api_key,
        tenant=tenant,
        port=port,
        extra=extra_env,
    )
    log_path = data_dir.parent / f"server-{port}.log"
    url = f"http://127.0.0.1:{port}"
    with (
        open(log_path, "wb") as log,
        subprocess.Popen(
            [sys.executable, "-m", "assetd", "serve", "--host", "127.0.0.1"]
            + ["--workers", str(workers)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        ) as process,
    ):
        try:
            _wait_until_healthy(process, url, log_path)
            key = api_key if api_key is not None else _printed_key(log_path)
            yield RunningServer(url, key, process.pid, data_dir, log_path)
        except BaseException:
            _stop(process, log_path, check=False)  # don't hide the test's own failure
            raise
        _stop(process, log_path, check=True)


def _wait_until_healthy(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(
                    f"assetd serve exited with {process.returncode}:\n"
                    + log_path.read_text(errors="replace")
                )
            try:
                if http.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise AssertionError(
        f"assetd serve not healthy after {START_TIMEOUT_SECONDS}s:\n"
        + log_path.read_text(errors="replace")
    )


def _printed_key(log_path: Path) -> str | None:
    for line in log_path.read_text(errors="replace").splitlines():
        if "(shown once):" in line:
            return line.rsplit(":", 1)[1].strip()
    return None


def _stop(process: subprocess.Popen[bytes], log_path: Path, *, check: bool) -> None:
    """SIGTERM must shut the server down promptly, through the app's shutdown, no traceback."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            if not check:
                return
            raise AssertionError(
                f"assetd serve ignored SIGTERM for {STOP_TIMEOUT_SECONDS}s:\n"
                + log_path.read_text(errors="replace")
            ) from None
    if not check:
        return
    output = log_path.read_text(errors="replace")
    # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM is normal.
    assert process.returncode in (0, -signal.SIGTERM), (
        f"assetd serve exited with {process.returncode}:\n{output}"
    )
    assert "Application shutdown complete" in output, output
    assert "Traceback" not in output, output
