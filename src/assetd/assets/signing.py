"""HMAC-signed, expiring URLs bound to one asset version."""

from __future__ import annotations

import hashlib
import hmac
import time


class UrlSigner:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the URL signing secret must be at least 16 bytes")
        self._secret = secret

    def signature(self, purpose: str, *parts: object) -> str:
        message = "\x1f".join([purpose, *(str(p) for p in parts)]).encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign_content(self, tenant_id: str, asset_id: str, version: int, expires: int) -> str:
        return self.signature("content", tenant_id, asset_id, version, expires)

    def verify_content(
        self, tenant_id: str, asset_id: str, version: int, expires: int, signature: str
    ) -> bool:
        """True only for an untampered signature whose expiry is still ahead."""
        if expires < int(time.time()):
            return False
        expected = self.sign_content(tenant_id, asset_id, version, expires)
        # Bytes, not str: compare_digest refuses non-ASCII text, which a client may send.
        return hmac.compare_digest(expected.encode(), signature.encode())
