"""Identifiers: 24 lowercase hex digits, time-ordered and unguessable."""

from __future__ import annotations

import os
import re
import time

ID_PATTERN = re.compile(r"^[0-9a-f]{24}$")


def new_id() -> str:
    """48 bits of milliseconds then 48 random bits: sorts by creation, can't be enumerated."""
    millis = time.time_ns() // 1_000_000
    return millis.to_bytes(6, "big").hex() + os.urandom(6).hex()


def is_id(value: str) -> bool:
    return bool(ID_PATTERN.fullmatch(value))
