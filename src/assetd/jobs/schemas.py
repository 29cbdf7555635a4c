from __future__ import annotations

from datetime import datetime

from assetd.jobs.models import JobState
from assetd.tenants.schemas import CamelModel


class JobRead(CamelModel):
    id: str
    kind: str
    state: JobState
    attempts: int
    max_attempts: int
    error: str | None
    version_number: int | None = None
    run_after: datetime
    created_at: datetime
    updated_at: datetime
