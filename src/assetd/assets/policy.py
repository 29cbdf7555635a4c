"""Tenant upload policies: what may come in, and how big."""

from __future__ import annotations

import fnmatch
import unicodedata
from pathlib import PurePosixPath, PureWindowsPath

from assetd.assets.models import AssetType
from assetd.errors import PayloadTooLarge, PolicyViolation, QuotaExceeded
from assetd.tenants.service import TenantSnapshot


def clean_filename(name: str) -> str:
    """The last path segment, NFC-normalized, without control characters; at most 255 chars."""
    name = unicodedata.normalize("NFC", name)
    name = PureWindowsPath(PurePosixPath(name).name).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    return name.strip()[:255]


def extension_of(filename: str) -> str:
    suffix = PurePosixPath(filename).suffix
    return suffix[1:].lower()[:32] if suffix else ""


def size_limit(tenant: TenantSnapshot, server_max_bytes: int) -> int:
    if tenant.max_file_size_bytes is None:
        return server_max_bytes
    return min(tenant.max_file_size_bytes, server_max_bytes)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the file is larger than the limit of {limit} bytes", limit=limit)


def over_quota(limit: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"the file does not fit in the tenant's remaining quota of {limit} bytes", limit=limit
    )


def check_extension(tenant: TenantSnapshot, extension: str) -> None:
    """Refuse early, from the name alone, before a byte is stored."""
    allowed = tenant.allowed_extensions
    if allowed is not None and extension not in allowed:
        shown = f".{extension}" if extension else "(no extension)"
        raise PolicyViolation(
            f"file extension {shown} is not allowed for this tenant",
            code="extension_not_allowed",
            allowed=list(allowed),
        )


def check_type(tenant: TenantSnapshot, mime_type: str, asset_type: AssetType) -> None:
    """allowed_types holds asset types ("image") or MIME patterns ("image/*", "application/pdf")."""
    allowed = tenant.allowed_types
    if allowed is None:
        return
    for entry in allowed:
        if "/" in entry and fnmatch.fnmatchcase(mime_type, entry):
            return
        if entry == asset_type.value:
            return
    raise PolicyViolation(
        f"content of type {mime_type} ({asset_type.value}) is not allowed for this tenant",
        code="type_not_allowed",
        allowed=list(allowed),
    )
