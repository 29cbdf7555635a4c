"""Every error as RFC 9457 application/problem+json; domain errors mapped to statuses here."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from assetd import errors
from assetd.storage.base import BlobNotFound

log = structlog.get_logger()

STATUS_BY_ERROR: list[tuple[type[errors.AssetdError], int]] = [
    (errors.NotFound, 404),
    (errors.Gone, 410),
    (errors.NotReady, 503),
    (errors.QuotaExceeded, 413),
    (errors.PayloadTooLarge, 413),
    (errors.PreconditionFailed, 412),
    (errors.Conflict, 409),
    (errors.Locked, 423),
    (errors.QueryError, 400),
    (errors.DigestMismatch, 400),
    (errors.PolicyViolation, 422),
    (errors.Unprocessable, 422),
    (errors.InvalidInput, 400),
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
    (errors.RangeNotSatisfiable, 416),
]

PROBLEM_TYPE = "application/problem+json"


def problem(
    status: int, title: str, detail: str, request: Request | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(extra)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="assetd"'
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


def status_for(exc: errors.AssetdError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.AssetdError)
    status = status_for(exc)
    response = problem(status, exc.title, exc.detail, request, **exc.extra)
    if isinstance(exc, errors.RangeNotSatisfiable):
        response.headers["Content-Range"] = f"bytes */{exc.size}"
    return response


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    found = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in found[:5])
    return problem(422, "Invalid request", where or "the request is invalid", request, errors=found)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    response = problem(exc.status_code, _reason(exc.status_code), str(exc.detail), request)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DataError | OverflowError):
        # The database refused a value (out of range, bad encoding) that validation let by.
        log.warning("request.data_error", path=request.url.path, error=str(exc))
        return problem(400, "Invalid input", "a value in the request is not acceptable", request)
    if isinstance(exc, BlobNotFound):
        log.error("blob.missing", key=str(exc), path=request.url.path)
        return problem(500, "Content missing", "the stored content is missing", request)
    log.exception("request.failed", path=request.url.path)
    return problem(
        500, "Internal error", "the server failed; the request id identifies it", request
    )


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.AssetdError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
