"""A small Python client for the native API (httpx, blocking)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

UPLOAD_CHUNK_BYTES = 1024 * 1024


class AssetdError(Exception):
    """The server answered with a problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title')}")
        self.status = status
        self.problem = problem


class AssetdClient:
    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base_url = base_url or os.environ.get("ASSETD_URL", "http://127.0.0.1:8000")
        api_key = api_key or os.environ.get("ASSETD_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> AssetdClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text}
            raise AssetdError(response.status_code, problem)
        return response

    def upload(
        self,
        path: Path,
        *,
        name: str | None = None,
        access: str | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        asset_id: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Stream a file as a raw body: a new asset, or a new version of asset_id."""
        params: dict[str, str] = {"filename": path.name}

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as handle:
                while chunk := handle.read(UPLOAD_CHUNK_BYTES):
                    if progress:
                        progress(len(chunk))
                    yield chunk

        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(path.stat().st_size),
            "X-Filename": quote(path.name),
        }
        url = f"/v1/assets/{asset_id}/versions" if asset_id else "/v1/assets"
        response = self._check(
            self._http.post(url, params=params, content=chunks(), headers=headers)
        )
        result: dict[str, Any] = response.json()
        if not asset_id and (name or access or tags or metadata):
            fields: dict[str, Any] = {}
            if name:
                fields["name"] = name
            if access:
                fields["access"] = access
            if tags:
                fields["tags"] = tags
            if metadata:
                fields["metadata"] = metadata
            result = self.update(result["id"], **fields)
        return result

    def create_link(self, url: str, **fields: Any) -> dict[str, Any]:
        body = {"kind": "LINK", "url": url, **fields}
        data: dict[str, Any] = self._check(self._http.post("/v1/assets", json=body)).json()
        return data

    def list_assets(
        self,
        q: str | None = None,
        *,
        sort: str | None = None,
        page_size: int = 60,
        cursor: str | None = None,
        trashed: str = "exclude",
        with_total: bool = False,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"pageSize": page_size, "trashed": trashed}
        if q:
            params["q"] = q
        if sort:
            params["sort"] = sort
        if cursor:
            params["cursor"] = cursor
        headers = {"X-Total-Count": "true"} if with_total else {}
        data: dict[str, Any] = self._check(
            self._http.get("/v1/assets", params=params, headers=headers)
        ).json()
        return data

    def iter_assets(
        self, q: str | None = None, *, sort: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every matching asset, following cursors page by page."""
        cursor = None
        while True:
            page = self.list_assets(q, sort=sort, page_size=500, cursor=cursor)
            yield from page["items"]
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def get(self, asset_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._check(self._http.get(f"/v1/assets/{asset_id}")).json()
        return data

    def update(self, asset_id: str, revision: int | None = None, **fields: Any) -> dict[str, Any]:
        headers = {"If-Match": f'"r{revision}"'} if revision is not None else {}
        response = self._http.patch(f"/v1/assets/{asset_id}", json=fields, headers=headers)
        data: dict[str, Any] = self._check(response).json()
        return data

    def download(
        self,
        asset_id: str,
        destination: Path,
        *,
        version: int | None = None,
        byte_range: tuple[int, int] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write the content (or a byte range of it) to destination; returns bytes written."""
        params = {"version": version} if version else {}
        headers = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        written = 0
        url = f"/v1/assets/{asset_id}/content"
        with self._http.stream("GET", url, params=params, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            with open(destination, "wb") as handle:
                for chunk in response.iter_bytes(UPLOAD_CHUNK_BYTES):
                    handle.write(chunk)
                    written += len(chunk)
                    if progress:
                        progress(len(chunk))
        return written

    def trash(self, asset_id: str) -> None:
        self._check(self._http.delete(f"/v1/assets/{asset_id}"))

    def restore(self, asset_id: str) -> dict[str, Any]:
        data: dict[str, Any] = self._check(self._http.post(f"/v1/assets/{asset_id}/restore")).json()
        return data

    def purge(self, asset_id: str) -> None:
        self._check(self._http.delete(f"/v1/assets/{asset_id}", params={"purge": "true"}))

    def versions(self, asset_id: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._check(
            self._http.get(f"/v1/assets/{asset_id}/versions")
        ).json()
        return data
