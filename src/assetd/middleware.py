"""Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer streamed bodies)."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assetd.errors import PayloadTooLarge

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
# JSON bodies are parsed in memory, so they get a hard cap; files go through multipart or
# raw uploads, which stream.
MAX_JSON_BYTES = 1024 * 1024


class BodyTooLarge(PayloadTooLarge):
    """A JSON body passed MAX_JSON_BYTES while being received (mapped to 413 in problems.py)."""

    def __init__(self) -> None:
        super().__init__(f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")


class Metrics:
    """Per-app registry: two apps in one process (tests) don't share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "assetd_http_requests",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "assetd_http_request_seconds",
            "Time to the response head",
            ["method", "route"],
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "assetd_upload_bytes", "Bytes received in uploads", registry=self.registry
        )


class RequestContextMiddleware:
    """A request id on every response and log line, and request metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
                route = scope.get("route")
                template = getattr(route, "path", "unmatched")
                self.metrics.latency.labels(scope["method"], template).observe(
                    time.perf_counter() - started
                )
                self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            await send(message)

        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").lower()
        if b"json" in content_type:
            # Raised from inside the app when the body is read, so that each API renders the
            # 413 in its own error envelope (problem+json natively, the seeds' elsewhere).
            declared = headers.get(b"content-length", b"")
            limit = 0 if declared.isdigit() and int(declared) > MAX_JSON_BYTES else MAX_JSON_BYTES
            receive = _capped(receive, limit)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            await self.app(scope, receive, send_with_id)


def _capped(receive: Receive, limit: int) -> Receive:
    received = 0

    async def capped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit or limit == 0:
                raise BodyTooLarge
        return message

    return capped
