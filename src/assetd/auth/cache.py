"""A short-lived cache of authenticated principals, so a download costs no key lookup."""

from __future__ import annotations

import time

from assetd.auth.principal import Principal

MAX_ENTRIES = 10_000


class PrincipalCache:
    """Revocation and policy changes reach a process within ttl seconds; 0 disables caching."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token_hash: str) -> Principal | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._entries.pop(token_hash, None)
            return None
        return entry[1]

    def put(self, token_hash: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[token_hash] = (time.monotonic() + self.ttl, principal)

    def clear(self) -> None:
        self._entries.clear()
