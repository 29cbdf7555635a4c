"""HTTP delivery of rendition bytes: validators and caching like the asset's own content."""

from __future__ import annotations

from email.utils import format_datetime

import anyio.to_thread
from fastapi import Request, Response

from assetd.assets.delivery import PRIVATE_CACHE, PUBLIC_CACHE, etag_matches
from assetd.assets.models import Access, Asset
from assetd.renditions.models import Rendition
from assetd.storage.base import BlobStorage, read_all
from assetd.storage.keys import blob_key


async def rendition_response(
    request: Request,
    storage: BlobStorage,
    asset: Asset,
    rendition: Rendition,
    data: bytes | None = None,
) -> Response:
    """The rendition's bytes; cacheable by anyone for PUBLIC assets, privately otherwise.

    ``data``: the rendition's bytes when the caller has them (it just made them); otherwise
    they are read from the store.
    """
    etag = f'"{rendition.sha256}"'
    headers = {
        "ETag": etag,
        "Last-Modified": format_datetime(rendition.created_at, usegmt=True),
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": "inline",
        "Cache-Control": PUBLIC_CACHE if asset.access is Access.PUBLIC else PRIVATE_CACHE,
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(rendition.size_bytes)
    if request.method == "HEAD":
        return Response(headers=headers, media_type=rendition.mime_type)
    if data is None:
        # Renditions are small (a 2048 px WebP is a few hundred KB): one read, one thread hop.
        key = blob_key(rendition.tenant_id, rendition.sha256)
        data = await anyio.to_thread.run_sync(read_all, storage, key)
    return Response(data, headers=headers, media_type=rendition.mime_type)
