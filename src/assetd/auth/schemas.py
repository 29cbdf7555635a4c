from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from assetd.auth.principal import ALL_SCOPES, MAX_ROLES, ROLE_PATTERN
from assetd.tenants.schemas import CamelModel, InputModel


class ApiKeyCreate(InputModel):
    name: str = Field("", max_length=200)
    scopes: list[str] = Field(default_factory=lambda: list(ALL_SCOPES[:3]))
    roles: list[Annotated[str, Field(pattern=ROLE_PATTERN)]] = Field(
        default_factory=list,
        max_length=MAX_ROLES,
        description="Roles that security templates grant actions to.",
    )
    expires_at: datetime | None = None


class ApiKeyRead(CamelModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    roles: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret; shown only in this response.")
