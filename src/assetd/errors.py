"""Domain errors. They carry no HTTP status; app.py maps each class to one."""

from __future__ import annotations

from typing import Any


class AssetdError(Exception):
    """Base of every error a client can cause; ``detail`` is safe to show them."""

    title = "Error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(AssetdError):
    title = "Not found"


class Conflict(AssetdError):
    title = "Conflict"


class Locked(AssetdError):
    """Another request is working on the same thing right now; retrying later may work."""

    title = "Locked"


class Gone(AssetdError):
    """Existed once and never will again (an expired or cancelled upload session)."""

    title = "Gone"


class NotReady(AssetdError):
    """Exists, but cannot be served yet (a version still being scanned)."""

    title = "Not ready"


class PreconditionFailed(AssetdError):
    title = "Precondition failed"


class InvalidInput(AssetdError):
    title = "Invalid input"


class QueryError(InvalidInput):
    title = "Invalid query"


class Unprocessable(InvalidInput):
    """Well-formed input that the tenant's own rules refuse (an unknown template id)."""

    title = "Unprocessable content"


class InvalidMetadata(Unprocessable):
    """Metadata that does not match its template; ``errors`` lists every wrong field."""

    title = "Invalid metadata"


class PayloadTooLarge(AssetdError):
    title = "Payload too large"


class QuotaExceeded(PayloadTooLarge):
    title = "Storage quota exceeded"


class PolicyViolation(AssetdError):
    title = "Policy violation"


class Unauthenticated(AssetdError):
    title = "Unauthorized"


class Forbidden(AssetdError):
    title = "Forbidden"


class RangeNotSatisfiable(AssetdError):
    title = "Range not satisfiable"

    def __init__(self, detail: str, *, size: int) -> None:
        super().__init__(detail, size=size)
        self.size = size


class DigestMismatch(InvalidInput):
    title = "Digest mismatch"
