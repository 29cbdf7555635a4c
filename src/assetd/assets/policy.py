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


_ZIP = frozenset({"application/zip", "application/java-archive", "application/x-zip-compressed"})
_OLE = frozenset(
    {
        "application/x-ole-storage",
        "application/x-msi",
        "application/CDFV2",
        "application/vnd.ms-office",
    }
)
# Extensions that name one format: the bytes must be that format. Names not listed (.txt, .bin,
# .json, …) promise nothing checkable and pass. The refined container types (an APK sniffed as
# a zip and named .apk) are accepted through their container.
_EXPECTED_TYPES: dict[str, frozenset[str]] = {
    "jpg": frozenset({"image/jpeg"}),
    "jpeg": frozenset({"image/jpeg"}),
    "png": frozenset({"image/png", "image/apng"}),
    "gif": frozenset({"image/gif"}),
    "webp": frozenset({"image/webp"}),
    "tif": frozenset({"image/tiff"}),
    "tiff": frozenset({"image/tiff"}),
    "heic": frozenset({"image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence"}),
    "avif": frozenset({"image/avif", "image/heif"}),
    "pdf": frozenset({"application/pdf"}),
    "mp4": frozenset({"video/mp4", "audio/mp4", "video/quicktime"}),
    "zip": _ZIP,
    "apk": _ZIP | {"application/vnd.android.package-archive"},
    "jar": _ZIP,
    "msi": _OLE | {"application/x-ms-installer"},
    "exe": frozenset({"application/x-dosexec", "application/vnd.microsoft.portable-executable"}),
}


def check_extension_matches(extension: str, mime_type: str) -> None:
    """The format the name claims must be the format the bytes are (an .exe named .jpg is not)."""
    expected = _EXPECTED_TYPES.get(extension)
    if expected is None or mime_type in expected or mime_type == "application/x-empty":
        return
    raise PolicyViolation(
        f"the file is named .{extension} but its content is {mime_type}",
        code="extension_mismatch",
    )
