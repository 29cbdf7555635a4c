"""Content-addressed blob keys: {tenant}/{sha[:2]}/{sha[2:]}."""

from __future__ import annotations

import re

from assetd.storage.base import InvalidKey

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEY = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-.]+)*$")


def blob_key(tenant_id: str, sha256: str) -> str:
    if not _SHA256.fullmatch(sha256):
        raise InvalidKey(f"not a sha256 hex digest: {sha256!r}")
    return f"{tenant_id}/{sha256[:2]}/{sha256[2:]}"


def check_key(key: str) -> str:
    """Refuse keys that are empty, absolute, or that climb out with '..'."""
    if not _KEY.fullmatch(key) or any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"invalid blob key: {key!r}")
    return key
