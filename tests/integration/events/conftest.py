"""A webhook receiver on 127.0.0.1 that checks signatures, and an app that runs real jobs."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from assetd.app import create_app
from assetd.config import Settings
from assetd.db.session import Database
from tests.integration.jobs.conftest import fast_jobs


@dataclass
class Received:
    event: str
    delivery: str
    signature: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def is_signed_by(self, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.signature)


@dataclass
class Receiver:
    """Records every POST; answers ``status`` (a test may change it)."""

    url: str = ""
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with state.lock:
                state.requests.append(
                    Received(
                        self.headers.get("X-Assetd-Event", ""),
                        self.headers.get("X-Assetd-Delivery", ""),
                        self.headers.get("X-Assetd-Signature", ""),
                        body,
                    )
                )
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
async def jobs_app(db: Database, settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with the real job registry, retrying within fractions of a second."""
    application = create_app(fast_jobs(settings, jobs_max_attempts=3))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def jobs_client(jobs_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=jobs_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
