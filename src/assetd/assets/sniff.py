"""What bytes are, from the bytes: a MIME type by libmagic and an asset type from it."""

from __future__ import annotations

import threading

import magic

from assetd.assets.models import AssetType

SNIFF_BYTES = 8192

# Containers whose real kind only the extension tells apart (an APK is a zip, an MSI an
# OLE compound file); trusted only when the bytes agree on the container.
_CONTAINER_REFINEMENTS: dict[str, dict[str, tuple[str, AssetType]]] = {
    "zip": {
        "apk": ("application/vnd.android.package-archive", AssetType.app),
        "aab": ("application/vnd.android.package-archive", AssetType.app),
        "epub": ("application/epub+zip", AssetType.book),
        "jar": ("application/java-archive", AssetType.app),
        "docx": (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            AssetType.document,
        ),
        "xlsx": (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            AssetType.document,
        ),
        "pptx": (
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            AssetType.document,
        ),
    },
    "ole": {
        "msi": ("application/x-msi", AssetType.app),
        "doc": ("application/msword", AssetType.document),
        "xls": ("application/vnd.ms-excel", AssetType.document),
    },
}
_ZIP_TYPES = {"application/zip", "application/java-archive", "application/x-zip-compressed"}
_OLE_TYPES = {
    "application/x-ole-storage",
    "application/x-msi",
    "application/CDFV2",
    "application/vnd.ms-office",
}
_WINDOWS_EXECUTABLES = {"exe", "dll", "msi", "scr", "sys"}
_SCRIPT_EXTENSIONS = {"sh", "bash", "ps1", "bat", "cmd", "py", "js", "vbs", "rb", "pl"}
_CERT_EXTENSIONS = {"pem", "crt", "cer", "der", "p12", "pfx", "p7b", "key", "csr"}
_DOCUMENT_TYPES = {
    "application/pdf",
    "application/rtf",
    "text/plain",
    "text/csv",
    "text/markdown",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
}


class Sniffer:
    """libmagic is not thread-safe per handle; one handle behind a lock is plenty fast."""

    def __init__(self) -> None:
        self._magic = magic.Magic(mime=True)
        self._lock = threading.Lock()

    def mime_type(self, head: bytes) -> str:
        if not head:
            return "application/x-empty"
        with self._lock:
            detected: str = self._magic.from_buffer(head[:SNIFF_BYTES])
        return detected or "application/octet-stream"

    def classify(self, head: bytes, extension: str) -> tuple[str, AssetType]:
        """The MIME type and asset type of content starting with `head` and named `*.extension`."""
        mime = self.mime_type(head)
        ext = extension.lower()
        if mime in _ZIP_TYPES and ext in _CONTAINER_REFINEMENTS["zip"]:
            return _CONTAINER_REFINEMENTS["zip"][ext]
        if mime in _OLE_TYPES and ext in _CONTAINER_REFINEMENTS["ole"]:
            return _CONTAINER_REFINEMENTS["ole"][ext]
        if mime == "application/x-dosexec" and ext in _WINDOWS_EXECUTABLES:
            # libmagic calls ~1% of random bytes DOS executables: believe it only with a name
            # that agrees.
            return mime, AssetType.app
        return mime, asset_type_for(mime, ext, head)


# MIME types libmagic names outright, whatever the extension says.
_DIRECT_TYPES = {
    "application/vnd.android.package-archive": AssetType.app,
    "application/x-msi": AssetType.app,
    "application/x-ms-installer": AssetType.app,
    "application/epub+zip": AssetType.book,
    "application/x-mobipocket-ebook": AssetType.book,
    "application/x-pem-file": AssetType.certificate,
    "application/x-x509-ca-cert": AssetType.certificate,
    "application/pkix-cert": AssetType.certificate,
}


def asset_type_for(mime: str, extension: str, head: bytes = b"") -> AssetType:
    if mime in _DIRECT_TYPES:
        return _DIRECT_TYPES[mime]
    major = mime.split("/", 1)[0]
    if major in ("image", "video", "audio"):
        return AssetType(major)
    if b"-----BEGIN CERTIFICATE" in head[:4096]:
        return AssetType.certificate
    if extension in _CERT_EXTENSIONS and mime in ("text/plain", "application/octet-stream"):
        return AssetType.certificate
    if mime in _ZIP_TYPES:
        return AssetType.package
    if (
        mime.startswith("text/x-")
        and mime != "text/x-c"
        or (extension in _SCRIPT_EXTENSIONS and major == "text")
    ):
        return AssetType.script
    if (
        mime in _DOCUMENT_TYPES
        or "officedocument" in mime
        or mime.startswith("application/vnd.ms-")
    ):
        return AssetType.document
    return AssetType.other
