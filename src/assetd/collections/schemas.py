from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import ConfigDict, Field

from assetd.assets.schemas import MAX_SECURITY_TEMPLATES
from assetd.tenants.schemas import CamelModel, InputModel

MAX_PAGE_SIZE = 1000
# Asset ids one PUT may add: large enough for real batches, small enough for one IN (…).
MAX_ASSETS_PER_CALL = 1000

TemplateIds = list[Annotated[str, Field(max_length=64)]]


class CollectionCreate(InputModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=10_000)
    security_template_ids: TemplateIds = Field(
        default_factory=list,
        max_length=MAX_SECURITY_TEMPLATES,
        description="Security templates (uuids) deciding who may see and change the "
        "collection; each must grant one of the caller's roles (admins: any).",
    )


class CollectionUpdate(InputModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    security_template_ids: TemplateIds | None = Field(None, max_length=MAX_SECURITY_TEMPLATES)


class CollectionAssetsAdd(InputModel):
    model_config = ConfigDict(extra="forbid")

    asset_ids: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1, max_length=MAX_ASSETS_PER_CALL
    )


class CollectionRead(CamelModel):
    id: str
    name: str
    description: str
    security_template_ids: list[str]
    created_at: datetime
    created_by: str | None
    modified_at: datetime
    modified_by: str | None


class CollectionPage(CamelModel):
    items: list[CollectionRead]
    page_number: int
    page_size: int
    total: int


class CollectionAssetsAdded(CamelModel):
    collection_id: str
    added: int = Field(description="How many of the ids were not in the collection before.")
