"""HTTP delivery of version bytes: ranges, validators, disposition and caching headers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Protocol
from urllib.parse import quote

import anyio.to_thread
from fastapi import Request, Response
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import StreamingResponse

from assetd.assets.models import Access
from assetd.errors import RangeNotSatisfiable
from assetd.storage.base import BlobStorage
from assetd.storage.keys import blob_key

PUBLIC_CACHE = "public, max-age=2592000"
SMALL_BODY_BYTES = 256 * 1024
PRIVATE_CACHE = "private, no-cache"
# At most 18 digits: more would pass any real size, and int() refuses over 4300 digits.
_RANGE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")
# Types a browser may render in place; anything else (HTML, SVG, …) is forced to download
# so that user content cannot run script on our origin.
_INLINE_TYPES = re.compile(
    r"^(image/(png|jpeg|gif|webp|avif|heic|heif|tiff|bmp)|video/.*|audio/.*|application/pdf|text/plain)$"
)


class ServedAsset(Protocol):
    """What content_response() reads of an asset: an Asset, or a plain row of one."""

    @property
    def access(self) -> Access: ...


class ServedVersion(Protocol):
    """What content_response() reads of a version: a Version, or a plain row of one."""

    @property
    def tenant_id(self) -> str: ...
    @property
    def sha256(self) -> str: ...
    @property
    def size_bytes(self) -> int: ...
    @property
    def mime_type(self) -> str: ...
    @property
    def original_name(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


def _read_all(storage: BlobStorage, key: str, start: int, end: int) -> bytes:
    return b"".join(storage.read(key, start, end))


def content_disposition(filename: str, mime_type: str, *, download: bool = False) -> str:
    """RFC 6266: an ASCII fallback plus the exact UTF-8 name in filename*."""
    disposition = "inline" if not download and _INLINE_TYPES.fullmatch(mime_type) else "attachment"
    if not filename:
        return disposition
    fallback = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    fallback = "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in fallback)
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range asked for, or None to send everything.

    Several ranges, or a header we do not understand, get the whole body: RFC 9110 lets a
    server ignore Range, and that beats a multipart/byteranges answer nobody asked us for.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable("a zero-length suffix range selects nothing", size=size)
        return (max(0, size - length), size - 1) if size else _unsatisfiable(size)
    start = int(first)
    end = int(last) if last else size - 1
    if start > end and last:
        return None
    if start >= size:
        _unsatisfiable(size)
    return start, min(end, size - 1)


def _unsatisfiable(size: int) -> tuple[int, int]:
    raise RangeNotSatisfiable(f"the range is outside the content's {size} bytes", size=size)


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return etag in candidates


@dataclass(frozen=True, slots=True)
class ContentPlan:
    """What a content request answers, decided from its headers before any byte is read."""

    status: int
    headers: dict[str, str]
    media_type: str | None
    # The blob and the inclusive byte span to send; key None: no body (304, HEAD, empty).
    key: str | None
    start: int = 0
    end: int = -1


def plan_content(
    request: Request, asset: ServedAsset, version: ServedVersion, *, download: bool = False
) -> ContentPlan:
    """Validators, range and headers of the answer; raises RangeNotSatisfiable (416).

    Touches no I/O, so that a caller may run it in the thread that reads the bytes.
    """
    etag = f'"{version.sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Last-Modified": format_datetime(version.created_at, usegmt=True),
        "Content-Disposition": content_disposition(
            version.original_name, version.mime_type, download=download
        ),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": PUBLIC_CACHE if asset.access is Access.PUBLIC else PRIVATE_CACHE,
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return ContentPlan(304, headers, None, None)

    size = version.size_bytes
    byte_range = None
    if_range = request.headers.get("if-range")
    if if_range is None or if_range.strip() == etag:
        byte_range = parse_range(request.headers.get("range"), size)
    status = 200
    start, end = 0, size - 1
    if byte_range is not None:
        start, end = byte_range
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1 if size else 0)

    if request.method == "HEAD" or size == 0:
        return ContentPlan(status, headers, version.mime_type, None)
    key = blob_key(version.tenant_id, version.sha256)
    return ContentPlan(status, headers, version.mime_type, key, start, end)


def read_small_body(storage: BlobStorage, plan: ContentPlan) -> bytes | None:
    """The plan's bytes if they are few enough to send in one piece (blocking); else None."""
    if plan.key is None or plan.end - plan.start >= SMALL_BODY_BYTES:
        return None
    return _read_all(storage, plan.key, plan.start, plan.end)


async def planned_response(
    storage: BlobStorage, plan: ContentPlan, body: bytes | None = None
) -> Response:
    """The answer to `plan`; `body`: its bytes when read_small_body() already has them."""
    if plan.key is None:
        return Response(status_code=plan.status, headers=plan.headers, media_type=plan.media_type)
    if body is None and plan.end - plan.start < SMALL_BODY_BYTES:
        # Small bodies in one thread hop instead of one per chunk plus one to open.
        body = await anyio.to_thread.run_sync(_read_all, storage, plan.key, plan.start, plan.end)
    if body is not None:
        return Response(
            body, status_code=plan.status, headers=plan.headers, media_type=plan.media_type
        )
    chunks = await anyio.to_thread.run_sync(storage.read, plan.key, plan.start, plan.end)
    return StreamingResponse(
        iterate_in_threadpool(chunks),
        status_code=plan.status,
        headers=plan.headers,
        media_type=plan.media_type,
    )


async def content_response(
    request: Request,
    storage: BlobStorage,
    asset: ServedAsset,
    version: ServedVersion,
    *,
    download: bool = False,
) -> Response:
    return await planned_response(storage, plan_content(request, asset, version, download=download))
