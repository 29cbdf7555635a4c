from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from assetd.auth.principal import ROLE_PATTERN
from assetd.templates.models import Action
from assetd.tenants.schemas import CamelModel, InputModel

# Limits that keep one template, and one asset's metadata, small enough to check per request.
MAX_FIELDS = 100
MAX_COLUMNS = 50
MAX_ALLOWED_VALUES = 1000
MAX_ALLOWED_VALUE_LENGTH = 500
MAX_VALUE_LENGTH = 4000
MAX_MULTI_VALUES = 500
MAX_GRID_ROWS = 1000
MAX_GRANTS = 100
MAX_TEMPLATE_IDS = 50
MAX_PAGE_SIZE = 1000

# Field and column names are also query paths (metadata.<name>), so they follow the query
# language's path segment rule.
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$"

FieldType = Literal["string", "vocabulary", "date", "multi", "grid"]
ColumnType = Literal["string", "vocabulary", "date", "number"]

AllowedValues = list[str] | None


def _check_allowed(values: AllowedValues, *, wanted: bool, what: str) -> None:
    if values is None:
        if wanted:
            raise ValueError(f"a {what} needs allowedValues")
        return
    if not wanted:
        raise ValueError(f"allowedValues is only for vocabulary and multi types, not {what}")
    if not values:
        raise ValueError("allowedValues must not be empty")
    if any(not 0 < len(v) <= MAX_ALLOWED_VALUE_LENGTH for v in values):
        raise ValueError(f"each allowed value must be 1 to {MAX_ALLOWED_VALUE_LENGTH} characters")
    if len(set(values)) != len(values):
        raise ValueError("allowedValues must not repeat a value")


class GridColumn(InputModel):
    """One typed column of a grid field."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=IDENTIFIER)
    label: str = Field("", max_length=200)
    type: ColumnType
    allowed_values: AllowedValues = Field(None, max_length=MAX_ALLOWED_VALUES)
    required: bool = False

    @model_validator(mode="after")
    def _allowed_values_fit_type(self) -> GridColumn:
        _check_allowed(
            self.allowed_values,
            wanted=self.type == "vocabulary",
            what=f"{self.type} column",
        )
        return self


class MetadataField(InputModel):
    """One field of a metadata template."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=IDENTIFIER, description="The key in the asset's metadata.")
    label: str = Field("", max_length=200)
    type: FieldType = Field(
        description="string; vocabulary (one of allowedValues); date (ISO 8601 date or "
        "date-time); multi (list of strings, restricted when allowedValues is given); grid "
        "(list of rows, each an object of typed columns)."
    )
    required: bool = False
    allowed_values: AllowedValues = Field(None, max_length=MAX_ALLOWED_VALUES)
    columns: list[GridColumn] | None = Field(None, max_length=MAX_COLUMNS)

    @model_validator(mode="after")
    def _options_fit_type(self) -> MetadataField:
        if self.type == "multi":
            if self.allowed_values is not None:
                _check_allowed(self.allowed_values, wanted=True, what="multi field")
        else:
            _check_allowed(
                self.allowed_values, wanted=self.type == "vocabulary", what=f"{self.type} field"
            )
        if self.type == "grid":
            if not self.columns:
                raise ValueError("a grid field needs at least one column")
            names = [c.name for c in self.columns]
            if len(set(names)) != len(names):
                raise ValueError("grid column names must be unique")
        elif self.columns is not None:
            raise ValueError("columns are only for grid fields")
        return self


def _unique_field_names(fields: list[MetadataField] | None) -> list[MetadataField] | None:
    if fields is not None:
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique")
    return fields


def _not_blank(name: str | None) -> str | None:
    if name is not None and not name.strip():
        raise ValueError("name must not be blank")
    return name


class MetadataTemplateCreate(InputModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Unique within the tenant.")
    description: str = Field("", max_length=2000)
    fields: list[MetadataField] = Field(default_factory=list, max_length=MAX_FIELDS)

    check_fields = field_validator("fields")(_unique_field_names)
    check_name = field_validator("name")(_not_blank)


class MetadataTemplateUpdate(InputModel):
    """Replaces what is given; `fields`, when given, replaces the whole list."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    fields: list[MetadataField] | None = Field(None, max_length=MAX_FIELDS)

    check_fields = field_validator("fields")(_unique_field_names)
    check_name = field_validator("name")(_not_blank)


class MetadataTemplateRead(CamelModel):
    id: str
    name: str
    description: str
    fields: list[MetadataField]
    created_at: datetime
    modified_at: datetime


class MetadataTemplatePage(CamelModel):
    items: list[MetadataTemplateRead]
    page_number: int
    page_size: int
    total: int


class Grant(InputModel):
    """`role` may do `actions` on the assets that carry the template."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(pattern=ROLE_PATTERN, max_length=100)
    actions: list[Action] = Field(min_length=1, max_length=len(Action))


def _merged_grants(grants: list[Grant] | None) -> list[Grant] | None:
    """One entry per role with its actions in a fixed order, whatever the client sent."""
    if grants is None:
        return None
    merged: dict[str, set[Action]] = {}
    for grant in grants:
        merged.setdefault(grant.role, set()).update(grant.actions)
    return [
        Grant(role=role, actions=[a for a in Action if a in actions])
        for role, actions in merged.items()
    ]


class SecurityTemplateCreate(InputModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Unique within the tenant.")
    description: str = Field("", max_length=2000)
    grants: list[Grant] = Field(default_factory=list, max_length=MAX_GRANTS)

    merge_grants = field_validator("grants")(_merged_grants)
    check_name = field_validator("name")(_not_blank)


class SecurityTemplateUpdate(InputModel):
    """Replaces what is given; `grants`, when given, replaces every grant."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    grants: list[Grant] | None = Field(None, max_length=MAX_GRANTS)

    merge_grants = field_validator("grants")(_merged_grants)
    check_name = field_validator("name")(_not_blank)


class SecurityTemplateRead(CamelModel):
    id: str
    name: str
    description: str
    grants: list[Grant]
    created_at: datetime
    modified_at: datetime


class SecurityTemplatePage(CamelModel):
    items: list[SecurityTemplateRead]
    page_number: int
    page_size: int
    total: int
