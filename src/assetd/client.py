"""A small Python client for the native API (httpx, blocking)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

UPLOAD_CHUNK_BYTES = 1024 * 1024
# Files at least this big go up in parallel parts through an upload session, and resume.
PARTS_THRESHOLD_BYTES = 64 * 1024 * 1024
PART_RETRIES = 3


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

    def upload_in_parts(
        self,
        path: Path,
        *,
        asset_id: str | None = None,
        fields: dict[str, Any] | None = None,
        part_size: int | None = None,
        parallel: int = 4,
        progress: Callable[[int], None] | None = None,
        state_dir: Path | None = None,
        stop_after_parts: int | None = None,
    ) -> dict[str, Any]:
        """Upload through a session: parts in parallel, straight to S3 when the server uses it.

        The session id is kept in a state file until the upload completes, so running the
        same upload again after a crash or an interrupt sends only the missing parts.
        stop_after_parts (tests) uploads that many parts and stops as a crash would.
        """
        stat = path.stat()
        state = _UploadState(state_dir or _default_state_dir(), self._http.base_url, path, asset_id)
        session = self._resume(state, stat.st_size)
        if session is None:
            body: dict[str, Any] = {"filename": path.name, "sizeBytes": stat.st_size}
            if part_size:
                body["partSizeBytes"] = part_size
            if asset_id:
                body["assetId"] = asset_id
            elif fields:
                body["asset"] = fields
            session = self._check(self._http.post("/v1/uploads", json=body)).json()
            state.save(session["id"])
        done = set(session.get("receivedParts") or [])
        todo = [part for part in session["parts"] if part["number"] not in done]
        if progress:
            progress(sum(p["sizeBytes"] for p in session["parts"] if p["number"] in done))
        if stop_after_parts is not None:
            todo = todo[:stop_after_parts]
        # Part URLs carry their own credentials (presigned): no Authorization header, which
        # S3 would refuse beside a presigned signature.
        with (
            httpx.Client(timeout=self._http.timeout) as bare,
            ThreadPoolExecutor(max_workers=max(1, parallel)) as pool,
        ):
            lock = threading.Lock()

            def advance(n: int) -> None:
                if progress:
                    with lock:
                        progress(n)

            offsets = {p["number"]: (p["number"] - 1) * session["partSizeBytes"] for p in todo}
            futures = [
                pool.submit(_put_part, bare, path, part, offsets[part["number"]], advance)
                for part in todo
            ]
            for future in futures:
                future.result()
        if stop_after_parts is not None:
            return dict(session)
        result: dict[str, Any] = self._check(
            self._http.post(f"/v1/uploads/{session['id']}/complete", json={})
        ).json()
        state.clear()
        return result

    def _resume(self, state: _UploadState, size_bytes: int) -> dict[str, Any] | None:
        upload_id = state.load()
        if upload_id is None:
            return None
        response = self._http.get(f"/v1/uploads/{upload_id}")
        if response.status_code != 200:
            state.clear()
            return None
        session: dict[str, Any] = response.json()
        if session["state"] != "open" or session["sizeBytes"] != size_bytes:
            state.clear()
            return None
        return session

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
        url = f"/v1/assets/{asset_id}/content"
        with self._http.stream("GET", url, params=params, headers=headers) as response:
            return self._save(response, destination, progress)

    def _save(
        self,
        response: httpx.Response,
        destination: Path,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write a streamed answer's body to destination (after checking its status)."""
        if response.status_code >= 400:
            response.read()
            self._check(response)
        written = 0
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

    # -- packages -------------------------------------------------------------------------

    def upload_package(self, path: Path) -> dict[str, Any]:
        """Send a package zip (streamed); the answer holds the import report. Installs nothing."""

        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as handle:
                while chunk := handle.read(UPLOAD_CHUNK_BYTES):
                    yield chunk

        headers = {
            "Content-Type": "application/zip",
            "Content-Length": str(path.stat().st_size),
        }
        response = self._http.post(
            "/v1/packages", params={"filename": path.name}, content=chunks(), headers=headers
        )
        data: dict[str, Any] = self._check(response).json()
        return data

    def install_package(
        self,
        package_id: str,
        *,
        on_conflict: str = "fail",
        ignore_unresolved: bool = False,
        resolutions: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "onConflict": on_conflict,
            "ignoreUnresolved": ignore_unresolved,
            "resolutions": resolutions or {},
        }
        response = self._http.post(f"/v1/packages/{package_id}/install", json=body)
        data: dict[str, Any] = self._check(response).json()
        return data

    def export_package(self, destination: Path, **selection: Any) -> int:
        """Stream an export (assetIds=[…], collectionId=…, or q=…) to destination; bytes."""
        with self._http.stream("POST", "/v1/packages/export", json=selection) as response:
            return self._save(response, destination)


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "assetd" / "uploads"


class _UploadState:
    """Which session an upload of this file (this size and mtime, to this server) is in."""

    def __init__(self, folder: Path, server: httpx.URL, path: Path, asset_id: str | None) -> None:
        stat = path.stat()
        identity = json.dumps(
            [str(server), str(path.resolve()), stat.st_size, stat.st_mtime_ns, asset_id]
        )
        self.file = folder / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.json"

    def load(self) -> str | None:
        try:
            upload_id = json.loads(self.file.read_text())["uploadId"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return upload_id if isinstance(upload_id, str) else None

    def save(self, upload_id: str) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        temp = self.file.with_suffix(".tmp")
        temp.write_text(json.dumps({"uploadId": upload_id}))
        temp.replace(self.file)

    def clear(self) -> None:
        self.file.unlink(missing_ok=True)


class _PartReader:
    """A part's bytes from the file, hashed and counted as they are sent."""

    def __init__(self, path: Path, offset: int, size: int, advance: Callable[[int], None]):
        self.path, self.offset, self.size, self.advance = path, offset, size, advance
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            remaining = self.size
            while remaining > 0:
                chunk = handle.read(min(UPLOAD_CHUNK_BYTES, remaining))
                if not chunk:
                    raise OSError(f"{self.path} shrank while it was being uploaded")
                remaining -= len(chunk)
                self.md5.update(chunk)
                self.sent += len(chunk)
                self.advance(len(chunk))
                yield chunk


def _put_part(
    http: httpx.Client,
    path: Path,
    part: dict[str, Any],
    offset: int,
    advance: Callable[[int], None],
) -> None:
    """PUT one part from the file, streamed; the ETag (MD5) proves what arrived, else retry."""
    size = part["sizeBytes"]
    for attempt in range(1, PART_RETRIES + 1):
        reader = _PartReader(path, offset, size, advance)
        try:
            response = http.put(part["url"], content=reader, headers={"Content-Length": str(size)})
        except httpx.TransportError:
            advance(-reader.sent)
            if attempt == PART_RETRIES:
                raise
            continue
        if response.status_code >= 400:
            advance(-reader.sent)
            if response.status_code < 500 or attempt == PART_RETRIES:
                try:
                    problem = response.json()
                except ValueError:
                    problem = {"detail": response.text[:500]}
                raise AssetdError(response.status_code, problem)
            continue
        if response.headers.get("etag", "").strip('"') == reader.md5.hexdigest():
            return
        advance(-reader.sent)  # the bytes were damaged on the way: send them again
    raise AssetdError(502, {"detail": f"part {part['number']} kept arriving damaged"})
